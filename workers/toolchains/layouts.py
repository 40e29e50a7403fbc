"""Memory layouts of TensorRT's I/O formats in numpy: pack a logical (NCHW-ordered) array into a format's
buffer and unpack it back. Standard library and numpy (imported lazily) only: the TensorRT runner uses it
as `toolchains.layouts`, the worker and tests as `workers.toolchains.layouts`.

TensorRT's formats (the TensorFormat documentation) put the channel axis C third from the end for the 2-D
spatial formats (C, H, W) and fourth from the end for the 3-D ones (C, D, H, W); every axis before C is
kept as it is. Two families, V the scalars per vector:

    vector-major (CHW2, CHW4, CHW16, CHW32, CDHW32): C becomes ceil(C/V) and a last axis of V is added:
        [N][C][H][W] -> [N][ceil(C/V)][H][W][V], (n, c, h, w) at [n][c // V][h][w][c % V]
    vector-minor (HWC8, HWC16, HWC, DHWC8, DHWC): C moves last, padded to a multiple of V (V = 1: no pad):
        [N][C][H][W] -> [N][H][W][ceil(C/V)*V], (n, c, h, w) at [n][h][w][c]

Padding is zeros; unpacking drops it.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Layout(NamedTuple):
    family: str  # "major" or "minor"
    vector: int  # V, the scalars per vector
    spatial: int  # 2 (H, W) or 3 (D, H, W): C is this many axes before the last, plus one


# spec format name (registry.spec.TensorFormat) -> its layout; "linear" is the array itself
LAYOUTS: dict[str, Layout] = {
    "chw2": Layout("major", 2, 2), "chw4": Layout("major", 4, 2), "chw16": Layout("major", 16, 2),
    "chw32": Layout("major", 32, 2), "cdhw32": Layout("major", 32, 3),
    "hwc8": Layout("minor", 8, 2), "hwc16": Layout("minor", 16, 2), "hwc": Layout("minor", 1, 2),
    "dhwc8": Layout("minor", 8, 3), "dhwc": Layout("minor", 1, 3),
}
KNOWN = ("linear", *LAYOUTS)


def _layout(fmt: str, rank: int) -> Layout | None:
    if fmt == "linear":
        return None
    if fmt not in LAYOUTS:
        raise ValueError(f"format {fmt!r} has no known memory layout; known: {', '.join(KNOWN)}")
    layout = LAYOUTS[fmt]
    if rank < layout.spatial + 1:
        raise ValueError(f"format {fmt} needs a tensor of rank >= {layout.spatial + 1} (a channel axis and "
                         f"{layout.spatial} spatial axes); got rank {rank}")
    return layout


def _padded(channels: int, vector: int) -> int:
    return -(-channels // vector) * vector


def packed_shape(fmt: str, shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The shape of `fmt`'s buffer for a tensor of logical `shape` (its size is the buffer's element count)."""
    shape = tuple(int(d) for d in shape)
    layout = _layout(fmt, len(shape))
    if layout is None:
        return shape
    axis = len(shape) - layout.spatial - 1
    lead, channels, rest = shape[:axis], shape[axis], shape[axis + 1:]
    if layout.family == "major":
        return (*lead, _padded(channels, layout.vector) // layout.vector, *rest, layout.vector)
    return (*lead, *rest, _padded(channels, layout.vector))


def pack(array: Any, fmt: str) -> Any:
    """`array` (logical order) laid out as `fmt`: a C-contiguous array of packed_shape(fmt, array.shape)."""
    import numpy as np

    array = np.asarray(array)
    layout = _layout(fmt, array.ndim)
    if layout is None:
        return np.ascontiguousarray(array)
    axis = array.ndim - layout.spatial - 1
    pad = _padded(array.shape[axis], layout.vector) - array.shape[axis]
    if pad:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, pad)
        array = np.pad(array, widths)
    if layout.family == "minor":
        return np.ascontiguousarray(np.moveaxis(array, axis, -1))
    lead, rest = array.shape[:axis], array.shape[axis + 1:]
    split = array.reshape(*lead, array.shape[axis] // layout.vector, layout.vector, *rest)
    return np.ascontiguousarray(np.moveaxis(split, axis + 1, -1))


def unpack(packed: Any, fmt: str, shape: tuple[int, ...] | list[int]) -> Any:
    """The logical array of logical `shape` held in `packed`, a buffer laid out as `fmt` (padding dropped)."""
    import numpy as np

    shape = tuple(int(d) for d in shape)
    expected = packed_shape(fmt, shape)
    packed = np.asarray(packed).reshape(expected)  # a flat buffer of the right size is fine too
    layout = _layout(fmt, len(shape))
    if layout is None:
        return packed
    axis = len(shape) - layout.spatial - 1
    if layout.family == "minor":
        logical = np.moveaxis(packed, -1, axis)
    else:
        split = np.moveaxis(packed, -1, axis + 1)
        merged = split.shape[:axis] + (split.shape[axis] * layout.vector,) + split.shape[axis + 2:]
        logical = split.reshape(merged)
    index = [slice(None)] * len(shape)
    index[axis] = slice(0, shape[axis])
    return np.ascontiguousarray(logical[tuple(index)])
