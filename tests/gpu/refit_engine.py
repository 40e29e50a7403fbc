"""Refit a TensorRT plan with new named weights (runs in the TensorRT interpreter: stdlib, numpy, tensorrt).

    python refit_engine.py PLAN NEW.npz ORIGINAL.npz OUT.plan RESULT.json

Sets every array of NEW.npz by name (trt.Refitter.set_named_weights); any weights TensorRT then lists as
missing are supplied from ORIGINAL.npz (every initializer of the model); refits; serializes the refitted
engine to OUT.plan. RESULT.json: {ok, all_weights, set, missing, filled, refit_ok, errors}.
"""

from __future__ import annotations

import json
import sys


def main(plan_path: str, weights_path: str, originals_path: str, out_path: str, result_path: str) -> int:
    import numpy as np
    import tensorrt as trt

    errors: list[str] = []

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:  # noqa: ANN001
            name = str(getattr(severity, "name", severity))
            if name in ("ERROR", "INTERNAL_ERROR"):
                errors.append(msg)
            if name in ("ERROR", "INTERNAL_ERROR", "WARNING"):
                sys.stderr.write(f"[TRT] [{name}] {msg}\n")

    logger = Logger()
    runtime = trt.Runtime(logger)
    with open(plan_path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    result: dict = {"ok": False, "errors": errors}
    if engine is None:
        result["message"] = "deserialize_cuda_engine returned None"
    else:
        refitter = trt.Refitter(engine, logger)
        result["all_weights"] = sorted(refitter.get_all_weights())
        keep = []
        result["set"] = {}
        with np.load(weights_path) as data:
            for name in data.files:
                array = np.ascontiguousarray(data[name], dtype=np.float32)
                keep.append(array)
                result["set"][name] = bool(refitter.set_named_weights(name, trt.Weights(array)))
        result["missing"] = sorted(refitter.get_missing_weights())
        result["filled"] = []
        with np.load(originals_path) as data:
            for name in result["missing"]:
                if name in data.files:
                    array = np.ascontiguousarray(data[name], dtype=np.float32)
                    keep.append(array)
                    if refitter.set_named_weights(name, trt.Weights(array)):
                        result["filled"].append(name)
        result["refit_ok"] = bool(refitter.refit_cuda_engine())
        if result["refit_ok"]:
            with open(out_path, "wb") as f:
                f.write(bytes(engine.serialize()))
            result["ok"] = True
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
