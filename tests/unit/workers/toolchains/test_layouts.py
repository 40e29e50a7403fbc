"""TensorRT's I/O memory layouts in numpy (workers/toolchains/layouts.py): pack and unpack round trips, and
the packed buffers checked element by element against the TensorFormat documentation's index formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from workers.toolchains import layouts

VECTOR_MAJOR = {"chw2": 2, "chw4": 4, "chw16": 16, "chw32": 32, "cdhw32": 32}
VECTOR_MINOR = {"hwc8": 8, "hwc16": 16, "hwc": 1, "dhwc8": 8, "dhwc": 1}
THREE_D = ("cdhw32", "dhwc8", "dhwc")


def sample(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


def shapes_for(fmt):
    if fmt in THREE_D:
        return [(1, 3, 2, 4, 5), (2, 33, 1, 2, 3), (2, 2, 8, 2, 2, 3)]  # the last: an extra leading axis
    return [(1, 3, 4, 5), (2, 17, 3, 2), (2, 32, 1, 1), (3, 2, 5, 2, 2), (5, 3, 7)]  # rank 5: leading axes; rank 3


@pytest.mark.parametrize("fmt", layouts.KNOWN)
def test_round_trip(fmt):
    for shape in shapes_for(fmt):
        x = sample(shape)
        packed = layouts.pack(x, fmt)
        assert packed.shape == layouts.packed_shape(fmt, shape)
        assert packed.flags.c_contiguous
        back = layouts.unpack(packed, fmt, shape)
        assert back.shape == x.shape and back.dtype == x.dtype
        np.testing.assert_array_equal(back, x)
        np.testing.assert_array_equal(layouts.unpack(packed.ravel(), fmt, shape), x)  # a flat buffer too


@pytest.mark.parametrize("fmt,vector", VECTOR_MAJOR.items())
def test_vector_major_matches_the_documented_index(fmt, vector):
    """[N][ceil(C/V)][spatial...][V], (n, c, spatial) at [n][c // V][spatial][c % V]; padding zero."""
    shape = (2, vector + 3, 2, 3, 2) if fmt in THREE_D else (2, vector + 3, 3, 2)
    x = sample(shape, seed=1)
    packed = layouts.pack(x, fmt)
    groups = -(-shape[1] // vector)
    assert packed.shape == (shape[0], groups, *shape[2:], vector)
    for n, c, *rest in itertools.product(*(range(d) for d in shape)):
        assert packed[(n, c // vector, *rest, c % vector)] == x[(n, c, *rest)]
    padding = packed[:, -1, ..., shape[1] - (groups - 1) * vector:]
    assert padding.size and not padding.any()


@pytest.mark.parametrize("fmt,vector", VECTOR_MINOR.items())
def test_vector_minor_matches_the_documented_index(fmt, vector):
    """[N][spatial...][ceil(C/V)*V], (n, c, spatial) at [n][spatial][c]; padding zero."""
    shape = (2, 5, 2, 3, 2) if fmt in THREE_D else (2, 5, 3, 2)
    x = sample(shape, seed=2)
    packed = layouts.pack(x, fmt)
    padded = -(-shape[1] // vector) * vector
    assert packed.shape == (shape[0], *shape[2:], padded)
    for n, c, *rest in itertools.product(*(range(d) for d in shape)):
        assert packed[(n, *rest, c)] == x[(n, c, *rest)]
    assert not packed[..., shape[1]:].any()


def test_packed_shapes():
    assert layouts.packed_shape("linear", [1, 3, 224, 224]) == (1, 3, 224, 224)
    assert layouts.packed_shape("chw4", (1, 3, 224, 224)) == (1, 1, 224, 224, 4)
    assert layouts.packed_shape("chw32", (8, 64, 7, 7)) == (8, 2, 7, 7, 32)
    assert layouts.packed_shape("hwc8", (1, 3, 224, 224)) == (1, 224, 224, 8)
    assert layouts.packed_shape("hwc", (1, 3, 224, 224)) == (1, 224, 224, 3)
    assert layouts.packed_shape("cdhw32", (1, 40, 4, 8, 8)) == (1, 2, 4, 8, 8, 32)
    assert layouts.packed_shape("dhwc8", (1, 3, 4, 8, 8)) == (1, 4, 8, 8, 8)
    assert layouts.packed_shape("chw2", (5, 6, 7)) == (3, 6, 7, 2)  # rank 3: C is the first axis


def test_dtypes_are_kept():
    for dtype in (np.float16, np.int8, np.uint16, np.int32):
        x = (sample((1, 5, 2, 2)) * 100).astype(dtype)
        packed = layouts.pack(x, "chw4")
        assert packed.dtype == dtype
        np.testing.assert_array_equal(layouts.unpack(packed, "chw4", x.shape), x)


@pytest.mark.parametrize("fmt,shape", [("hwc8", (3, 4)), ("dhwc8", (3, 4, 4)), ("cdhw32", (3, 4, 4))])
def test_a_rank_too_small_for_the_format_is_refused(fmt, shape):
    with pytest.raises(ValueError, match=f"format {fmt} needs a tensor of rank >= "):
        layouts.pack(np.zeros(shape), fmt)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format 'dla_hwc4' has no known memory layout"):
        layouts.packed_shape("dla_hwc4", (1, 3, 4, 4))
