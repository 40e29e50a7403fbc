"""INT8 calibration: a stored calibration cache served to the builder (no calibration batches)."""

from __future__ import annotations

from ..common import log, read_bytes


def make_calibrator(trt, cache: bytes):
    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        """Serves a stored INT8 calibration cache; never feeds batches."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names, *args):
            return None

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, data, *args):
            return None

    return CacheOnlyCalibrator()


def attach_calibrator(trt, config, spec: dict, path: str | None, profiles: list):
    """Give an int8 build the --calibration-cache; returns the calibrator (keep it alive) or None."""
    if not path:
        return None
    if "int8" not in spec["precision"]:
        log(f"--calibration-cache {path} ignored: the spec does not ask for int8")
        return None
    calibrator = make_calibrator(trt, read_bytes(path, "calibration cache"))
    config.int8_calibrator = calibrator
    if profiles and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profiles[0])
    return calibrator
