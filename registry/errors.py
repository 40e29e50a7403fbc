"""One root error with typed subclasses. Only `api/` maps them to HTTP status codes; the SDK maps the
JSON body's `code` back to the same class (`error_for_code`), so a caller can `except NoCompatibleEngine`
whether the error was raised in this process or answered by a farm.

Every error carries a stable `code` (machine-readable, unique per class) and a message that says what
happened and what to do about it. An error that came over the wire also carries the HTTP `status`.
"""

from __future__ import annotations

import functools
from typing import Any


class FarmError(Exception):
    code = "farm_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.status = status  # the HTTP status when the SDK read this error from a farm's answer

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"[{self.status} {self.code}] {self.message}" if self.status else self.message


# --- bad input -------------------------------------------------------------------------------------


class InvalidInput(FarmError):
    """The caller sent something malformed (a spec, a target, a shape)."""

    code = "invalid_input"


class InvalidRequest(InvalidInput):
    """The HTTP request itself does not fit the route (a missing field, a wrong type)."""

    code = "invalid_request"


class InvalidSpec(InvalidInput):
    code = "invalid_spec"


class InvalidTarget(InvalidInput):
    code = "invalid_target"


class InvalidModel(InvalidInput):
    """The upload is not ONNX, fails the checker, or references files outside itself."""

    code = "invalid_model"


class InvalidCalibration(InvalidInput):
    """A calibration upload that is neither a readable .npz data set of numeric arrays nor a TensorRT
    calibration cache, or one that does not fit the model and spec it is submitted with."""

    code = "invalid_calibration"


class InvalidPlugin(InvalidInput):
    """A plugin library upload that is not an ELF shared object a TensorRT process could load."""

    code = "invalid_plugin"


class PluginNotAllowed(InvalidInput):
    """A build names a plugin library whose digest the farm's allow-list (TRTFARM_ALLOWED_PLUGINS) lacks: the
    API refuses it at submit, and a worker whose own allow-list lacks it fails the build without loading it."""

    code = "plugin_not_allowed"


class CalibrationNeeded(InvalidInput):
    """An INT8 build of a model without Q/DQ nodes, submitted without calibration data or a cache."""

    code = "calibration_needed"


class NotAPlan(InvalidInput):
    """Bytes that do not start like a TensorRT plan."""

    code = "not_a_plan"


class TooLarge(InvalidInput):
    code = "too_large"


class RangeNotSatisfiable(InvalidInput):
    """A byte range that starts past the end of the artifact."""

    code = "range_not_satisfiable"


class UnsupportedOption(InvalidInput):
    """A spec option the toolchain that would build it does not have."""

    code = "unsupported_option"


# --- who may do what ------------------------------------------------------------------------------


class Unauthorized(FarmError):
    """No API key, or one the farm does not know (revoked, mistyped)."""

    code = "unauthorized"


class Forbidden(FarmError):
    """The API key lacks the scope the operation needs, or the thing belongs to another key."""

    code = "forbidden"


# --- not found -------------------------------------------------------------------------------------


class NotFound(FarmError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class CalibrationNotFound(NotFound):
    code = "calibration_not_found"


class PluginNotFound(NotFound):
    code = "plugin_not_found"


class BuildNotFound(NotFound):
    code = "build_not_found"


class EngineNotFound(NotFound):
    code = "engine_not_found"


class WorkerNotFound(NotFound):
    code = "worker_not_found"


class NoLocalPath(NotFound):
    """The artifact cannot be read from this host's disk: the blob store is no folder, the client is not on the
    API's host (or comes through a proxy), or TRTFARM_LOCAL_READS is off. The SDK then downloads it."""

    code = "no_local_path"


class PlanMismatch(FarmError):
    """A fetched TensorRT plan's own header names a version the runtime cannot load (the SDK checks before
    handing a plan out)."""

    code = "plan_mismatch"


class NoCompatibleEngine(NotFound):
    """No stored engine loads on the runtime (details: every rejection's reason, the target to build)."""

    code = "no_compatible_engine"


# --- conflicts -------------------------------------------------------------------------------------


class Conflict(FarmError):
    code = "conflict"


class AmbiguousTarget(Conflict):
    """A partial target matched several things the fleet offers."""

    code = "ambiguous_target"


class UnservedTarget(Conflict):
    """A partial target matched nothing the fleet offers."""

    code = "unserved_target"


class BuildStateError(Conflict):
    code = "build_state"


# --- blobs -----------------------------------------------------------------------------------------


class BlobError(FarmError):
    code = "blob_error"


class DigestMismatch(BlobError):
    """Bytes read or written do not hash to the digest they are stored under."""

    code = "digest_mismatch"


class BlobNotFound(BlobError, NotFound):
    code = "blob_not_found"


class StoreFull(BlobError):
    """The blob store (or the API's upload folder) has no space left; nothing partial was kept."""

    code = "store_full"


# --- the farm itself --------------------------------------------------------------------------------


class Unavailable(FarmError):
    """A backing service (the database) does not answer right now; try again shortly."""

    code = "unavailable"


class TooManyStreams(Unavailable):
    """This API process serves as many event streams as TRTFARM_EVENT_STREAMS allows; try again later."""

    code = "too_many_streams"


class InternalError(FarmError):
    """A bug: the farm failed in a way it did not foresee (the server log has the traceback)."""

    code = "internal_error"


# --- toolchains and builds -------------------------------------------------------------------------


class ToolchainError(FarmError):
    """A toolchain could not be found, probed or started."""

    code = "toolchain_error"


class RunnerFailed(ToolchainError):
    """A toolchain runner reported a failure; `runner_code` is the runner's own error code (parse_error,
    build_error, run_error, unsupported_option, invalid_input, timeout, runner_crashed)."""

    code = "runner_failed"

    def __init__(self, runner_code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message + (f"\nhint: {hint}" if hint else ""), details={"runner_code": runner_code})
        self.runner_code = runner_code
        self.hint = hint


class BuildFailed(FarmError):
    """A build the caller waited for ended `failed`; `build` is its BuildInfo (error, attempts, log hint)."""

    code = "build_failed"

    def __init__(self, message: str, *, build: Any = None, details: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, details=details, status=status)
        self.build = build


class BuildCancelled(BuildFailed):
    """A build ended `cancelled` (waited for by the SDK), or a running build was asked to stop (worker)."""

    code = "build_cancelled"


class BuildTimeout(FarmError):
    """`submit(wait=True, timeout=...)` or `wait()` ran out of time; the build goes on at the farm."""

    code = "build_timeout"


# --- talking to a farm -----------------------------------------------------------------------------


class Unreachable(FarmError):
    """The farm's URL did not answer (connection refused, DNS, TLS, timeout)."""

    code = "unreachable"


class RemoteError(FarmError):
    """An error answer whose code this SDK does not know (a newer farm, a proxy's plain-text 502):
    `code` is what the farm said, or `http_<status>` when it said no code."""

    code = "remote_error"

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details, status=status)
        self.code = code


def _subclasses(cls: type[FarmError]) -> list[type[FarmError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@functools.cache
def _classes_by_code() -> dict[str, type[FarmError]]:
    return {cls.code: cls for cls in [FarmError, *_subclasses(FarmError)]
            if cls.__module__ == __name__ and cls not in (RemoteError, RunnerFailed)}


def error_for_code(code: str, message: str, *, status: int, details: dict[str, Any] | None = None) -> FarmError:
    """The error a farm's JSON body `{code, message, details}` stands for, as its own class."""
    cls = _classes_by_code().get(code)
    if cls is None:
        return RemoteError(status, code, message, details)
    return cls(message, details=details, status=status)
