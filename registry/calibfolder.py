"""A folder of calibration batches as one data set, for the SDK's upload (registry.calibclient).

A calibration data set is one .npz (registry/calibdata.py); a folder of them is what a pipeline that writes
batches as it goes leaves behind. Every .npz in the folder (sorted by name) must hold the same array names, each
with the same dtype and per-sample shape; each name's batches are concatenated along axis 0 in name order into
one .npz written array by array (one array of one file in memory at a time). Every file is checked as the farm
checks an upload first (calibdata.inspect_npz), so a bad batch is named before anything goes up.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from registry import calibdata
from registry.errors import InvalidCalibration

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
UNLIMITED = 1 << 62  # the farm enforces TRTFARM_MAX_CALIBRATION_MIB on the merged upload


def merge_folder(folder: Path, dest: Path) -> Path:
    """Write the folder's batches as one data set at `dest` (see the module text)."""
    import numpy as np
    from numpy.lib import format as npy

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".npz")
    if not files:
        raise InvalidCalibration(f"{folder} holds no .npz file: a calibration folder holds batches written with "
                                 "numpy.savez(path, input_name=array), each with the same array names")
    layouts = {f.name: calibdata.inspect_npz(f, UNLIMITED)["inputs"] for f in files}
    first = files[0].name
    for name, inputs in layouts.items():
        if _layout(inputs) != _layout(layouts[first]):
            raise InvalidCalibration(f"{folder}: {name} holds {_layout(inputs)}, but {first} holds "
                                     f"{_layout(layouts[first])}; every batch holds the same arrays (name: dtype, "
                                     "shape after axis 0)")
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for array, info in layouts[first].items():
            total = sum(layout[array]["shape"][0] for layout in layouts.values())
            header = {"descr": npy.dtype_to_descr(np.dtype(info["dtype"])), "fortran_order": False,
                      "shape": (total, *info["shape"][1:])}
            member = zipfile.ZipInfo(f"{array}.npy", date_time=FIXED_TIME)  # the same batches, the same bytes
            with archive.open(member, "w", force_zip64=True) as out:
                npy.write_array_header_2_0(out, header)
                for f in files:
                    with np.load(f, allow_pickle=False) as batch:
                        out.write(np.ascontiguousarray(batch[array]).data)
    return dest


def _layout(inputs: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {array: (info["dtype"], tuple(info["shape"][1:])) for array, info in sorted(inputs.items())}
