"""The SDK's INT8 calibration uploads (mixed into `registry.client.Farm`): a calibration data set (.npz, or a
folder of .npz batches merged first) or a TensorRT calibration cache goes up once (HEAD first, by its sha256),
streamed from disk, and a build request names it by digest. Standard library, httpx and the schemas only, like
the rest of the SDK (numpy for a folder)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry import rawupload
from registry.calibfolder import merge_folder
from registry.digests import is_digest
from registry.errors import InvalidInput
from registry.schemas import CalibrationInfo, InputDeleted

CalibrationLike = str | os.PathLike[str] | None  # a digest, or a file to upload


class CalibrationOps:
    _request: Callable[..., Any]

    def calibration(self, digest: str) -> CalibrationInfo:
        """GET /v1/calibration/{digest}: what the farm recorded of an upload (its kind and summary)."""
        return CalibrationInfo.model_validate(self._request("GET", f"/v1/calibration/{digest}").json())

    def has_calibration(self, digest: str) -> bool:
        """HEAD /v1/calibration/{digest}."""
        return rawupload.exists(self._request, f"/v1/calibration/{digest}")

    def delete_calibration(self, digest: str) -> InputDeleted:
        """Remove an uploaded calibration input (admin key; Conflict while a build names it)."""
        return InputDeleted.model_validate(self._request("DELETE", f"/v1/calibration/{digest}").json())

    def upload_calibration(self, path: str | os.PathLike[str], kind: str | None = None) -> CalibrationInfo:
        """Upload an INT8 calibration data set (.npz: one array per model input, axis 0 counting samples; or a
        folder of such batches, merged in name order: registry.calibfolder) or a TensorRT calibration cache,
        unless the farm has it already. `kind` (data or cache) makes the farm refuse a file of the other kind.
        Returns its info; `.digest` is what a build request's `calibration` names."""
        if Path(path).is_dir():
            with tempfile.TemporaryDirectory(prefix="trtfarm-calibration-") as tmp:
                merged = merge_folder(Path(path), Path(tmp) / f"{Path(path).name or 'calibration'}.npz")
                return self.upload_calibration(merged, kind)
        return CalibrationInfo.model_validate(rawupload.upload(
            self._request, "/v1/calibration", path, "calibration file", {"kind": kind} if kind else None))

    def _calibration_ref(self, calibration: CalibrationLike) -> str | None:
        """A calibration digest from a digest or a file (uploaded first when the farm lacks it)."""
        if calibration is None:
            return None
        if isinstance(calibration, str) and is_digest(calibration):
            return calibration
        if not Path(calibration).exists():
            raise InvalidInput(f"calibration {str(calibration)!r} is neither a digest (sha256:<hex>) nor an "
                               "existing file (an .npz data set or a TensorRT calibration cache) or folder of "
                               ".npz batches")
        return self.upload_calibration(calibration).digest
