"""Farm validation edge cases found by the peer suite: string tensors, and input sets that the ORIGINAL
model rejects (random values for a shape tensor) — recorded as inconclusive, not as a failed build."""

from __future__ import annotations

import numpy as np
import pytest

from workers.validation import InputSpec, compare, random_inputs
from workers.verify import summary


def test_random_string_inputs_are_unicode_words():
    spec = InputSpec("x", np.dtype(object), (2, 3))
    feeds = random_inputs([spec], {"x": (2, 3)}, seed=0)
    x = feeds["x"]
    assert x.shape == (2, 3) and x.dtype.kind == "U"  # saved with np.savez without pickling
    assert all(1 <= len(w) <= 8 and w.isalpha() and w.islower() for w in x.ravel())
    assert np.array_equal(random_inputs([spec], {"x": (2, 3)}, seed=0)["x"], x)  # deterministic


@pytest.mark.parametrize(("ref", "act", "passed"), [
    (np.array(["monday", "tuesday"], dtype=object), np.array(["monday", "tuesday"]), True),
    (np.array(["monday", "tuesday"], dtype=object), np.array(["MONDAY", "tuesday"]), False),
    (np.array([], dtype=object), np.array([], dtype=str), True),
])
def test_string_outputs_compare_exactly(ref, act, passed):
    result = compare({"y": ref}, {"y": act})
    assert result.passed is passed
    if not passed:
        assert "strings differ" in result.reason


def _case(passed, abs_err=None, rel_err=None, skipped=None):
    case = {"shapes": {"x": [1]}, "passed": passed, "max_abs_error": abs_err, "max_rel_error": rel_err}
    if skipped:
        case["skipped"] = skipped
    return case


@pytest.mark.parametrize(("cases", "passed", "max_abs"), [
    ([_case(True, 1e-6, 1e-5)], True, 1e-6),
    ([_case(True, 1e-6, 1e-5), _case(False, 1.0, 0.5)], False, 1.0),
    ([_case(None, skipped="the original model fails too"), _case(True, 2e-6, 1e-5)], True, 2e-6),
    ([_case(None, skipped="the original model fails too")], None, 0.0),
])
def test_summary_ignores_inconclusive_sets(cases, passed, max_abs):
    found = summary(cases)
    assert found["passed"] is passed
    assert found["max_abs_error"] == max_abs
    assert found["cases"] == cases
    assert ("skipped" in found) is (passed is None)
