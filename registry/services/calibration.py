"""INT8 calibration inputs (docs/design.md "INT8 calibration"): uploads, the checks at submit, and the caches
builds made from data sets, found again by later builds.

- `register`: an uploaded file (written and hashed by the API) is inspected (registry.calibdata: an .npz data
  set or a TensorRT calibration cache), stored as a content-addressed blob and recorded with its kind and
  summary. A build request names it by digest; the digest is part of the build key.
- `check_submit`: INT8 TensorRT builds of a model without Q/DQ nodes need calibration (CalibrationNeeded);
  a data set must name the model's inputs and hold whole batches of profile 0's opt shape; a cache must come
  from the calibrator the spec asks for.
- `find_cache` / `record_cache`: (model, data set, TensorRT version, calibrator[, GPU]) -> the cache a build
  made; the next build with the same four serves it instead of calibrating again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry import calibdata, compat, onnxinfo
from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.db.tables import Calibration, CalibrationCache, Model
from registry.errors import CalibrationNeeded, CalibrationNotFound, InvalidCalibration, InvalidSpec
from registry.schemas import CalibrationInfo
from registry.spec import BuildSpec, shape_text

# caches of these calibrators are made before layer fusion: they serve every GPU (TensorRT's developer guide);
# the others are kept per GPU model
PORTABLE_ALGORITHMS = ("entropy2", "minmax")
UPLOAD_HINT = ("upload a calibration data set (.npz, one array per input) or a TensorRT calibration cache: "
               "`trtfarm submit --calibration FILE`, Farm.submit(..., calibration=PATH) or POST /v1/calibration; "
               "or build from a model with QuantizeLinear/DequantizeLinear nodes (quantization-aware training)")


@dataclass(frozen=True)
class MadeCache:
    """A calibration cache a build made from a data set (recorded with the build's engine)."""

    data_digest: str
    version: str  # the TensorRT version that calibrated
    algorithm: str
    device: str  # "" for the portable calibrators, else the GPU model (SKU)
    cache_digest: str
    size: int
    summary: dict[str, Any]  # registry.calibdata.inspect_cache


def algorithm_of(spec: BuildSpec) -> str:
    return spec.calibration_algorithm or calibdata.DEFAULT_ALGORITHM


def reuse_device(algorithm: str, sku: str | None) -> str:
    return "" if algorithm in PORTABLE_ALGORITHMS else (sku or "")


# ------------------------------------------------------------------------------------------------ uploads


def register(db: Database, blobs: BlobStore, path: Path, digest: str, size: int, *, kind: str | None = None,
             name: str | None = None, uploaded_by: str | None = None, max_bytes: int) -> tuple[CalibrationInfo, bool]:
    """Inspect, store and record an uploaded calibration file (hashed to `digest` while it arrived; the blob
    store checks it again). Returns (info, created); a known digest is answered from its row (its blob is
    restored if it went missing)."""
    with db.session() as s:
        row = s.get(Calibration, digest)
        known = None if row is None else info_of(row)
    if known is not None and kind not in (None, known.kind):
        raise InvalidCalibration(f"kind={kind}, but {digest} is a calibration {known.kind} already")
    if known is not None and blobs.exists(digest):
        return known, False
    found, summary = calibdata.inspect(path, kind, max_bytes)
    blobs.put_file(path, expected_digest=digest)
    if known is not None:
        return known, False
    values = dict(digest=digest, kind=found, size=size, name=name, summary=summary, uploaded_by=uploaded_by)
    with db.session() as s:
        created = _insert_new(s, Calibration, values, ["digest"])
        return info_of(s.get(Calibration, digest)), created


def read(db: Database, digest: str) -> CalibrationInfo:
    with db.session() as s:
        row = s.get(Calibration, digest)
        if row is None:
            raise CalibrationNotFound(f"no calibration data set or cache {digest}; upload it with "
                                      "POST /v1/calibration (or `trtfarm submit --calibration FILE`)")
        return info_of(row)


def info_of(row: Calibration) -> CalibrationInfo:
    return CalibrationInfo.model_validate(row)


def kind_of(session: Session, digest: str | None) -> str | None:
    """A build's calibration kind: the upload's; a blob named before uploads were offered is a cache, as then."""
    if digest is None:
        return None
    return session.scalar(select(Calibration.kind).where(Calibration.digest == digest)) or calibdata.CACHE


# ----------------------------------------------------------------------------------------------- submit


def check_submit(session: Session, digest: str | None, spec: BuildSpec, toolchain: str,
                 model: Model, version: str | None = None) -> list[dict[str, str]]:
    """Refuse what could not calibrate (module docstring); the warnings for the build (`version`: the target's
    TensorRT version)."""
    int8 = "int8" in spec.precision
    if spec.calibration_algorithm is not None and not int8:
        raise InvalidSpec(f"calibration_algorithm={spec.calibration_algorithm} chooses the INT8 calibrator; "
                          "the spec does not ask for int8 (add it to precision, or drop calibration_algorithm)")
    qdq = onnxinfo.has_qdq(model.op_types)
    if digest is None:
        if toolchain == "tensorrt" and int8 and qdq is False:
            raise CalibrationNeeded(f"precision int8 needs INT8 scales: model {model.id[:19]}… has no "
                                    "QuantizeLinear/DequantizeLinear nodes to take them from, and the request names "
                                    f"no calibration. To fix: {UPLOAD_HINT}")
        if toolchain == "tensorrt" and int8 and qdq is None:
            return [_warning("calibration_unchecked", "the model was registered before the farm recorded op "
                             "types, so whether it has Q/DQ nodes is unknown; without them an int8 build without "
                             "calibration fails")]
        return []
    if toolchain != "tensorrt" or not int8:
        return [_warning("calibration_ignored", "a calibration is only used by TensorRT builds with precision "
                         "int8; this build ignores it (it stays part of the build key)")]
    if qdq:
        return [_warning("calibration_ignored", "the model has Q/DQ nodes: TensorRT takes its INT8 scales from "
                         "them (explicit quantization) and ignores the calibration")]
    row = session.get(Calibration, digest)
    if row is not None and row.kind == calibdata.CACHE:
        _check_cache(row, spec)
        return _release_warning(row, version)
    if row is not None:
        check_data_fits(row.summary, model.inputs, spec)
    return []


def _warning(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _check_cache(row: Calibration, spec: BuildSpec) -> None:
    made_by = row.summary.get("algorithm")
    if spec.calibration_algorithm is not None and made_by != spec.calibration_algorithm:
        raise InvalidCalibration(f"calibration cache {row.digest[:19]}… was made by the {made_by} calibrator "
                                 f"({row.summary.get('header')}), but the spec asks for "
                                 f"calibration_algorithm={spec.calibration_algorithm}; drop it (the build serves "
                                 "the cache with its own calibrator) or upload a data set")


def _release_warning(row: Calibration, version: str | None) -> list[dict[str, str]]:
    """A cache written by another TensorRT release than the target's (the header's number: 8601 is 8.6.1, 100300
    is 10.3.0): TensorRT ties a cache to its release, and a build that only has the cache cannot calibrate
    again (a rollout carries the old build's calibration as it was)."""
    made = _release(row.summary.get("tensorrt", ""))
    if made is None or not version or made == compat.parse_version(version)[:2]:
        return []
    return [_warning("calibration_release", f"calibration cache {row.digest[:19]}… was written by TensorRT "
                     f"{made[0]}.{made[1]} ({row.summary.get('header')}); this build uses {version}, and TensorRT "
                     "may not take a cache of another release. If the build fails or its INT8 engine is off, "
                     "name the data set instead (it calibrates again) or a cache this release wrote")]


def _release(number: str) -> tuple[int, int] | None:
    if not number.isdigit():
        return None
    n = int(number)
    return (n // 10000, n // 100 % 100) if n >= 100000 else (n // 1000, n // 100 % 10)


def batch_shapes(inputs: list[dict[str, Any]], spec: BuildSpec) -> dict[str, tuple[int, ...]]:
    """The shape each input is calibrated at: profile 0's opt shape, or the model's fixed shape."""
    first = spec.profiles[0] if spec.profiles else {}
    return {i["name"]: tuple(first[i["name"]].opt) if i["name"] in first else
            tuple(d if isinstance(d, int) and d > 0 else 1 for d in i["shape"]) for i in inputs}


def check_data_fits(summary: dict[str, Any], inputs: list[dict[str, Any]], spec: BuildSpec) -> int:
    """InvalidCalibration unless the data set names exactly the model's inputs, each sample has the shape
    the input is calibrated at less its batch axis, and it holds at least one batch; the number of batches."""
    arrays, names = summary["inputs"], [i["name"] for i in inputs]
    missing, extra = [n for n in names if n not in arrays], [n for n in arrays if n not in names]
    if missing or extra:
        raise InvalidCalibration(
            f"the data set's arrays ({', '.join(arrays)}) must be named after the model's inputs "
            f"({', '.join(names)})" + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not inputs: {', '.join(extra)}" if extra else ""))
    shapes = batch_shapes(inputs, spec)
    batches = {len(s) and s[0] for s in shapes.values()}
    if 0 in batches or len(batches) > 1:
        shown = ", ".join(f"{n} {shape_text(s) or 'scalar'}" for n, s in shapes.items())
        raise InvalidCalibration(f"calibration feeds batches along axis 0 of every input, one batch size for all; "
                                 f"the inputs' calibration shapes (profile 0's opt) are {shown}")
    batch = batches.pop()
    for i in inputs:
        _check_array(i, arrays[i["name"]], shapes[i["name"]])
    samples = int(summary["samples"])
    if samples < batch:
        raise InvalidCalibration(f"the data set holds {samples} sample(s), fewer than one batch of {batch} "
                                 "(axis 0 of profile 0's opt shape)")
    return samples // batch


def _check_array(model_input: dict[str, Any], array: dict[str, Any], shape: tuple[int, ...]) -> None:
    name, sample = model_input["name"], tuple(array["shape"][1:])
    if sample != shape[1:]:
        raise InvalidCalibration(
            f"array {name!r} holds samples of shape {shape_text(sample) or 'scalar'} (its shape "
            f"{shape_text(array['shape'])}, axis 0 counting samples), but input {name} is calibrated at "
            f"{shape_text(shape)} (profile 0's opt shape): each sample must be {shape_text(shape[1:])}")
    wants_float = str(model_input.get("dtype", "")).startswith(("float", "bfloat"))
    if array["dtype"].startswith("float") and not wants_float:
        raise InvalidCalibration(f"array {name!r} is {array['dtype']}, but input {name} takes "
                                 f"{model_input.get('dtype')}: give it integer values")


# ------------------------------------------------------------------------------------------ made caches


def find_cache(db: Database, model_id: str, data_digest: str, version: str, algorithm: str,
               sku: str | None) -> dict[str, Any] | None:
    """The cache an earlier build made from this data set for this model, TensorRT version and calibrator."""
    key = (model_id, data_digest, version, algorithm, reuse_device(algorithm, sku))
    with db.session() as s:
        row = s.get(CalibrationCache, key)
        if row is None:
            return None
        return {"cache": row.cache_digest, "size": row.size, "build": row.build_id}


def record_cache(session: Session, build_id: str, model_id: str, made: MadeCache) -> None:
    """Record a build's cache (in the transaction that records its engine); the first of two racing builds
    wins. The cache is also an upload of its own: a later request may name it."""
    values = dict(model_id=model_id, build_id=build_id,
                  **{k: v for k, v in dataclasses.asdict(made).items() if k != "summary"})
    _insert_new(session, CalibrationCache, values,
                ["model_id", "data_digest", "version", "algorithm", "device"])
    _insert_new(session, Calibration, dict(digest=made.cache_digest, kind=calibdata.CACHE, size=made.size,
                                           name=f"build-{build_id}.cache", summary=made.summary), ["digest"])


def _insert_new(session: Session, table: Any, values: dict[str, Any], key: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; whether the row was inserted."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
    return bool(session.execute(statement).rowcount)
