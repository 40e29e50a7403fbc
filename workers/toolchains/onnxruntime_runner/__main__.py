"""The ONNX Runtime runner's command line: `python workers/toolchains/run.py onnxruntime COMMAND ...` (see
workers/toolchains/__init__.py), or `python -m toolchains.onnxruntime_runner` with workers/ on the path."""

from __future__ import annotations

import sys
from typing import Any

from .. import common
from .build import build
from .options import probe
from .session import bench, run


def merge(args: Any) -> dict[str, Any]:
    raise common.RunnerError("invalid_input", "merge is a TensorRT command",
                             hint="onnxruntime builds have no timing cache")


COMMANDS = {"probe": probe, "build": build, "run": run, "bench": bench, "merge": merge}


def parser() -> common.Parser:
    p = common.Parser(prog="onnxruntime_runner")
    p.add_argument("--probe", action="store_true", help="print this toolchain's description as JSON")
    sub = p.add_subparsers(dest="command", parser_class=common.Parser)
    b = sub.add_parser("build")
    b.add_argument("--model", required=True)
    b.add_argument("--spec", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--timing-cache-in")
    b.add_argument("--timing-cache-out")
    b.add_argument("--plugin", action="append", default=[])
    b.add_argument("--calibration-cache")
    for name in ("run", "bench"):
        r = sub.add_parser(name)
        r.add_argument("--engine", required=True)
        r.add_argument("--inputs", required=True)
        r.add_argument("--profile", type=int, default=None, help="ignored: ONNX Runtime takes any shape")
        if name == "run":
            r.add_argument("--outputs", required=True)
        else:
            common.add_bench_arguments(r)
    m = sub.add_parser("merge")
    m.add_argument("--cache", action="append", default=[])
    m.add_argument("--out")
    for s in (b, m, *(sub.choices[n] for n in ("run", "bench"))):
        s.add_argument("--result", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    return common.main("onnxruntime-runner", parser, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
