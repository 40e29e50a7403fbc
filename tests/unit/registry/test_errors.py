"""registry.errors: one root, one code per class, and the SDK's way back from a JSON body to the class."""

from __future__ import annotations

import inspect

import pytest

from registry import errors

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, errors.FarmError) and c.__module__ == errors.__name__]
WIRE = [c for c in CLASSES if c not in (errors.RemoteError, errors.RunnerFailed)]


def test_every_error_has_its_own_code() -> None:
    codes = [c.code for c in CLASSES]
    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("cls", WIRE, ids=lambda c: c.__name__)
def test_a_json_error_body_comes_back_as_its_class(cls: type[errors.FarmError]) -> None:
    sent = cls("what happened; what to do", details={"k": 1})
    got = errors.error_for_code(**{**sent.to_dict(), "message": sent.message}, status=418)
    assert type(got) is cls and got.message == sent.message and got.details == {"k": 1} and got.status == 418
    assert str(got) == f"[418 {cls.code}] what happened; what to do"


def test_an_unknown_code_is_a_remote_error_keeping_the_code() -> None:
    got = errors.error_for_code("from_a_newer_farm", "hello", status=409)
    assert isinstance(got, errors.RemoteError) and (got.code, got.status, got.message) == (
        "from_a_newer_farm", 409, "hello")


def test_the_hierarchy_lets_callers_catch_by_meaning() -> None:
    assert issubclass(errors.NoCompatibleEngine, errors.NotFound)
    assert issubclass(errors.BlobNotFound, errors.NotFound) and issubclass(errors.BlobNotFound, errors.BlobError)
    assert issubclass(errors.UnsupportedOption, errors.InvalidInput)
    assert issubclass(errors.BuildCancelled, errors.BuildFailed)
    failed = errors.RunnerFailed("parse_error", "Unsupported ONNX op: Foo", hint="export with opset 17")
    assert failed.code == "runner_failed" and failed.runner_code == "parse_error"
    assert "hint: export with opset 17" in failed.message and failed.details == {"runner_code": "parse_error"}
