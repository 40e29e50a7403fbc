"""One root error with typed subclasses. Only `api/` maps them to HTTP status codes.

Every error carries a stable `code` (machine-readable) and a message that says what happened and
what to do about it.
"""

from __future__ import annotations

from typing import Any


class FarmError(Exception):
    code = "farm_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(FarmError):
    """The caller sent something malformed (a spec, a target, a shape)."""

    code = "invalid_input"


class InvalidSpec(InvalidInput):
    code = "invalid_spec"


class InvalidTarget(InvalidInput):
    code = "invalid_target"


class InvalidModel(InvalidInput):
    """The upload is not ONNX, fails the checker, or references files outside itself."""

    code = "invalid_model"


class TooLarge(InvalidInput):
    code = "too_large"


class NotFound(FarmError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class BuildNotFound(NotFound):
    code = "build_not_found"


class EngineNotFound(NotFound):
    code = "engine_not_found"


class NoCompatibleEngine(NotFound):
    code = "no_compatible_engine"


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


class BlobError(FarmError):
    code = "blob_error"


class DigestMismatch(BlobError):
    """Bytes read or written do not hash to the digest they are stored under."""

    code = "digest_mismatch"


class BlobNotFound(BlobError, NotFound):
    code = "blob_not_found"


class UnsupportedOption(FarmError):
    """A spec option the toolchain that would build it does not have."""

    code = "unsupported_option"


class ToolchainError(FarmError):
    """A toolchain runner failed (parser or builder error, crash, timeout)."""

    code = "toolchain_error"


class RemoteError(FarmError):
    """The SDK's view of an error answered by the farm's API."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return f"[{self.status} {self.code}] {self.message}"
