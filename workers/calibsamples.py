"""INT8 engines' validation inputs and tolerance class (docs/design.md "INT8 calibration").

An engine calibrated from a data set is validated on samples of that data set, not on uniform random values:
calibration fits each tensor's INT8 range to the data's distribution, and inputs from another distribution
(random values in [-1, 1) for images normalised otherwise) would saturate ranges the engine was never meant to
cover and fail it for the wrong reason. Every shape set whose non-batch dimensions match the data set's
samples takes its first B samples (repeated when the set holds fewer); other shape sets (a profile's min or max
in a dimension other than the batch) fall back to random values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry import onnxinfo
from workers.validation import InputSpec, Shape


def explicitly_quantized(model_path: str | Path) -> bool:
    """Whether the model has QuantizeLinear/DequantizeLinear nodes (its INT8 scales are its own)."""
    return bool(onnxinfo.has_qdq(onnxinfo.op_types(onnxinfo.load(model_path))))


def load_samples(path: Path | None, inputs: list[InputSpec], say: Callable[[str], None]) -> dict[str, Any]:
    """The data set's arrays of the model's inputs ({} without a data set, or when it lacks an input)."""
    if path is None:
        return {}
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        if any(i.name not in data.files for i in inputs):
            say("validation inputs: random (the calibration data set lacks some inputs)")
            return {}
        samples = {i.name: data[i.name] for i in inputs}
    say(f"validation inputs: samples of the calibration data set ({len(next(iter(samples.values())))} held) "
        "where their shape fits, else random")
    return samples


def sample_inputs(samples: dict[str, Any], inputs: list[InputSpec], shapes: dict[str, Shape]) -> dict[str, Any] | None:
    """The first B samples (B: each shape's axis 0) of every input as its dtype, or None when a shape's other
    dimensions differ from the samples' (then the caller makes random inputs)."""
    if not samples:
        return None
    import numpy as np

    feeds = {}
    for spec in inputs:
        shape, array = tuple(shapes[spec.name]), samples[spec.name]
        if not shape or tuple(array.shape[1:]) != shape[1:] or len(array) == 0:
            return None
        feeds[spec.name] = np.ascontiguousarray(array[np.arange(shape[0]) % len(array)], dtype=spec.dtype)
    return feeds
