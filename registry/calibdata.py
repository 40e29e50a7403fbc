"""INT8 calibration uploads (docs/design.md "INT8 calibration"): what a file is, read without loading it.

**Data set**: one `.npz` file (`numpy.savez` or `numpy.savez_compressed`), one array per model input, named
after the input. Axis 0 counts samples; the other axes are one sample as the input takes it: for an input
the engine sees as (B, C, H, W) at profile 0's opt shape (or the model's fixed shape), the array is
(N, C, H, W). Every array holds the same N. The runner serves N // B batches of B consecutive samples
(a remainder is left out, and the build log says so). Arrays are numeric (bool, integers, floats, not
object, string, complex or structured) and float arrays finite; the runner hands TensorRT float32 for float
inputs (as TensorRT wants), the input's own type otherwise. Uncompressed, the arrays may total
TRTFARM_MAX_CALIBRATION_MIB.

**Cache**: a TensorRT calibration cache as `write_calibration_cache` writes it: the header line
`TRT-<version>-<Calibrator>` (e.g. `TRT-8601-EntropyCalibration2`), then one `<tensor>: <hex>` line per
tensor. The header names the calibrator that made it; a build serving it uses the same calibrator class.

`numpy` is imported inside the functions (the SDK imports nothing from here).
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any

from registry.errors import InvalidCalibration, TooLarge

DATA, CACHE = "data", "cache"
KINDS = (DATA, CACHE)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
CACHE_MAGIC = b"TRT-"
MAX_CACHE_BYTES = 64 << 20  # caches hold a few dozen bytes per tensor: anything larger is not one
NUMERIC_KINDS = "biuf"
# the calibrator named in a cache's header -> the spec's calibration_algorithm
HEADER_ALGORITHMS = {"EntropyCalibration2": "entropy2", "EntropyCalibration": "entropy",
                     "MinMaxCalibration": "minmax", "LegacyCalibration": "legacy"}
DEFAULT_ALGORITHM = "entropy2"  # the spec's null: TensorRT's recommended calibrator
_HEADER = re.compile(r"TRT-(\d+)-([A-Za-z0-9_]+)")
_SCALE = re.compile(r"[0-9a-fA-F]{1,16}")
_READ = 1 << 20


def sniff(path: Path) -> str | None:
    """DATA for a zip (an .npz), CACHE for a file that starts like a TensorRT calibration cache, else None."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head in ZIP_MAGIC:
        return DATA
    return CACHE if head == CACHE_MAGIC else None


def inspect(path: Path, kind: str | None, max_bytes: int) -> tuple[str, dict[str, Any]]:
    """(kind, summary) of an uploaded file; InvalidCalibration for anything else (or another kind than
    `kind`, when given), TooLarge for a data set whose arrays total more than `max_bytes` uncompressed."""
    found = sniff(path)
    if found is None:
        raise InvalidCalibration("the upload is neither a calibration data set (an .npz file, as numpy.savez "
                                 "writes it) nor a TensorRT calibration cache (text starting 'TRT-'); "
                                 "see docs/design.md \"INT8 calibration\" for both formats")
    if kind is not None and kind != found:
        raise InvalidCalibration(f"kind={kind}, but the upload is a calibration "
                                 f"{'data set (.npz)' if found == DATA else 'cache'}; drop kind or fix it")
    return found, (inspect_npz(path, max_bytes) if found == DATA else inspect_cache(path))


# ------------------------------------------------------------------------------------------- data sets


def inspect_npz(path: Path, max_bytes: int) -> dict[str, Any]:
    """{"inputs": {name: {"dtype", "shape"}}, "samples": N, "bytes": uncompressed size} of a data set.
    Every member is read once (its CRC checked, float values checked finite), one MiB at a time."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, max_bytes)
            inputs = {name: _array(archive, info, name) for name, info in members.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, OSError) as exc:
        raise InvalidCalibration(f"the data set is not a readable .npz file ({type(exc).__name__}: {exc}); "
                                 "write it with numpy.savez(path, input_name=array, ...)") from None
    counts = {name: a["shape"][0] for name, a in inputs.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{n} {c}" for n, c in counts.items())
        raise InvalidCalibration(f"the data set's arrays hold different numbers of samples (axis 0: {shown}); "
                                 "give every input the same number")
    return {"inputs": inputs, "samples": next(iter(counts.values())),
            "bytes": sum(i.file_size for i in members.values())}


def _members(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if not infos:
        raise InvalidCalibration("the data set holds no array; save one array per model input, named after it")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise TooLarge(f"the data set's arrays total {total / 2**20:.0f} MiB uncompressed, over the "
                       f"{max_bytes >> 20} MiB limit (TRTFARM_MAX_CALIBRATION_MIB); a few hundred to a thousand "
                       "samples calibrate well")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.flag_bits & 0x1:
            raise InvalidCalibration(f"the data set holds {info.filename!r}, which is no .npy array (an .npz "
                                     "holds one NAME.npy per array, unencrypted)")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise InvalidCalibration(f"the data set holds two arrays named {name!r}")
        members[name] = info
    return members


def _array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> dict[str, Any]:
    """One member's dtype and shape, its size checked against them and its bytes read (CRC, finiteness)."""
    import numpy as np
    from numpy.lib import format as npy

    with archive.open(info) as f:
        try:
            version = npy.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version}")
            reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = reader(f)
        except ValueError as exc:
            raise InvalidCalibration(f"array {name!r} of the data set is no readable .npy array ({exc})") from None
        _check_dtype(name, dtype, shape)
        expected = f.tell() + math.prod(shape) * dtype.itemsize
        if info.file_size != expected:
            raise InvalidCalibration(f"array {name!r} of the data set is {info.file_size} bytes, but its header "
                                     f"({dtype} {list(shape)}) needs {expected}: the file is damaged")
        step = max(1, _READ // dtype.itemsize) * dtype.itemsize
        while chunk := f.read(step):
            if dtype.kind == "f" and not np.isfinite(np.frombuffer(chunk, dtype=dtype)).all():
                raise InvalidCalibration(f"array {name!r} of the data set holds NaN or infinite values; "
                                         "calibration needs finite samples")
    return {"dtype": dtype.name, "shape": [int(d) for d in shape]}


def _check_dtype(name: str, dtype: Any, shape: tuple[int, ...]) -> None:
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidCalibration(f"array {name!r} of the data set has dtype {dtype}; calibration data must be "
                                 "numeric (bool, integers or floats)")
    if len(shape) < 1 or shape[0] < 1:
        raise InvalidCalibration(f"array {name!r} of the data set has shape {list(shape)}; axis 0 counts the "
                                 "samples and needs at least one")


# ------------------------------------------------------------------------------------------------ caches


def inspect_cache(path: Path) -> dict[str, Any]:
    """{"header", "algorithm", "tensorrt", "tensors"} of a TensorRT calibration cache."""
    if path.stat().st_size > MAX_CACHE_BYTES:
        raise TooLarge(f"a calibration cache over {MAX_CACHE_BYTES >> 20} MiB is not one (caches hold a few "
                       "dozen bytes per tensor)")
    try:
        lines = path.read_bytes().decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise InvalidCalibration("the calibration cache is not ASCII text (TensorRT writes a 'TRT-…' header "
                                 "line, then '<tensor>: <hex>' lines)") from None
    header = parse_header(lines[0] if lines else "")
    scales = [line for line in lines[1:] if line.strip()]
    for number, line in enumerate(scales, start=2):
        tensor, sep, value = line.rpartition(": ")
        if not sep or not tensor or not _SCALE.fullmatch(value.strip()):
            raise InvalidCalibration(f"line {number} of the calibration cache is not '<tensor>: <hex scale>': "
                                     f"{line[:80]!r}")
    if not scales:
        raise InvalidCalibration("the calibration cache lists no tensor scale")
    return {**header, "tensors": len(scales)}


def parse_header(line: str) -> dict[str, str]:
    """{"header", "algorithm", "tensorrt"} of a cache's first line, `TRT-8601-EntropyCalibration2`."""
    found = _HEADER.fullmatch(line.strip())
    if found is None:
        raise InvalidCalibration(f"the calibration cache starts with {line.strip()[:80]!r}, not a TensorRT header "
                                 "like 'TRT-8601-EntropyCalibration2'")
    algorithm = HEADER_ALGORITHMS.get(found[2])
    if algorithm is None:
        raise InvalidCalibration(f"the calibration cache was made by calibrator {found[2]!r}; known: "
                                 f"{', '.join(HEADER_ALGORITHMS)}")
    return {"header": found[0], "algorithm": algorithm, "tensorrt": found[1]}
