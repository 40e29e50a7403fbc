"""The SDK's fleet operations (mixed into `registry.client.Farm`): matrix builds, rollouts, pins, gc, model
deletion, drain and resume. Standard library, httpx and the schemas only, like the rest of the SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from registry.digests import canonical_json
from registry.errors import FarmError, InvalidInput
from registry.schemas import BuildInfo, EngineInfo, EngineList, GcReportInfo, ModelDeleted, WorkerInfo


@dataclass
class MatrixRow:
    """One target of a matrix build: what happened to it."""

    target: str
    outcome: str  # built, already there, failed, cancelled, refused (at submit), waiting (not waited for)
    build: BuildInfo | None = None
    reason: str | None = None


def fleet_targets(workers: list[WorkerInfo], toolchain: str | None = None) -> list[str]:
    """Every (toolchain version, device) the live, undrained fleet builds for, as full targets."""
    found: list[str] = []
    for w in workers:
        if not w.live or w.drain_requested:
            continue
        for tc in w.toolchains:
            if toolchain and tc["kind"] != toolchain:
                continue
            for dev in w.devices:
                device = dev.get("sku") if tc["kind"] == "tensorrt" else dev.get("device")
                if device and not (tc["kind"] == "onnxruntime" and dev.get("sku")):
                    found.append(f"{tc['kind']}=={tc['version']}@{device}")
    return sorted(set(found))


@dataclass
class RolloutRow(MatrixRow):
    """One engine of the old version and the build of the same spec for the new one."""

    old: EngineInfo | None = None
    new: EngineInfo | None = None

    @property
    def latency_ratio(self) -> float | None:
        """The new engine's p50 over the old one's."""
        a, b = (e.latency_p50_ms if e else None for e in (self.old, self.new))
        return round(b / a, 3) if a and b else None


def kind_version(text: str, what: str) -> tuple[str, str]:
    kind, sep, version = text.partition("==")
    if not sep or not kind or not version or "@" in version:
        raise InvalidInput(f"{what} {text!r}: give KIND==VERSION, e.g. tensorrt==8.6.0")
    return kind, version


class FleetOps:
    _request: Callable[..., Any]

    def rollout(self, from_: str, to: str, *, since_days: float | None = None, dry_run: bool = False,
                wait: bool = True, progress: Callable[[list[RolloutRow]], None] | None = None,
                timeout: float | None = None, poll_interval: float = 1.0) -> list[RolloutRow]:
        """For every engine of `from_` (KIND==OLD; with `since_days`, only those downloaded within that many
        days), submit its model and spec for `to` (KIND==NEW) on the same device: idempotent (a rerun finds the
        builds there) and resumable. Rows say what built, what failed or was refused on NEW and why, and
        carry both engines (accuracy and latency) once built."""
        farm: Any = self
        kind, old = kind_version(from_, "--from")
        new_kind, new = kind_version(to, "--to")
        if new_kind != kind or new == old:
            raise InvalidInput(f"a rollout goes from one version of a toolchain to another: {from_} -> {to}")
        params: dict[str, Any] = {"toolchain": kind, "version": old}
        if since_days is not None:
            params["fetched_within_days"] = since_days
        olds = EngineList.model_validate(farm._get("/v1/engines", params=params)).items
        rows, seen = [], set()
        for e in olds:
            wanted = (e.model, e.device, canonical_json(e.spec))
            if wanted in seen:
                continue
            seen.add(wanted)
            row = RolloutRow(f"{kind}=={new}@{e.device}", "planned", old=e)
            if not dry_run:  # the same inputs as the old build: its calibration and plugin libraries too
                submitted = self._matrix_submit(farm, e.model, row.target, e.spec, plugins=e.plugins,
                                                calibration=farm.build(e.build_id).calibration)
                row.outcome, row.build, row.reason = submitted.outcome, submitted.build, submitted.reason
            rows.append(row)
        self._follow(farm, rows, wait and not dry_run, progress, timeout, poll_interval)
        for row in rows:
            if row.build is not None and row.build.engine_id:
                row.new = farm.engine(row.build.engine_id)
        return rows

    def matrix(self, model: Any, toolchain: str | None = None, spec: Any = None, *, wait: bool = True,
               progress: Callable[[list[MatrixRow]], None] | None = None, timeout: float | None = None,
               poll_interval: float = 1.0, plugins: Sequence[Any] = (), calibration: Any = None) -> list[MatrixRow]:
        """Submit the model for every (version, device) the live fleet serves (deduplicated as any submit: a
        target built before is 'already there'); with `wait`, follow them all, calling `progress(rows)`.
        `plugins` and `calibration` go with every submit (as `submit` takes them)."""
        farm: Any = self
        targets = fleet_targets(farm.workers(), toolchain)
        if not targets:
            raise FarmError(f"no live worker serves {toolchain or 'any toolchain'}: nothing to build a matrix for "
                            "(trtfarm workers)")
        ref = farm._model_ref(model, upload=True)
        rows = [self._matrix_submit(farm, ref, target, spec, plugins=plugins, calibration=calibration)
                for target in targets]
        self._follow(farm, rows, wait, progress, timeout, poll_interval)
        return rows

    @staticmethod
    def _follow(farm: Any, rows: list, wait: bool, progress: Callable | None, timeout: float | None,
                poll_interval: float) -> None:
        """Poll the rows' builds until none is waiting (or `timeout`), calling `progress(rows)` each round."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if progress is not None:
                progress(rows)
            pending = [r for r in rows if r.outcome == "waiting"]
            if not wait or not pending or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(poll_interval)
            for row in pending:
                row.build = farm.build(row.build.id)
                row.outcome, row.reason = _outcome(row.build)

    @staticmethod
    def _matrix_submit(farm: Any, model: str, target: str, spec: Any, plugins: Sequence[Any] = (),
                       calibration: Any = None) -> MatrixRow:
        try:
            build = farm.submit(model, target, spec, wait=False, plugins=plugins, calibration=calibration)
        except FarmError as exc:  # e.g. an option this version lacks: refused at submit, with the reason
            return MatrixRow(target, "refused", reason=f"{exc.code}: {exc}")
        outcome, reason = _outcome(build)
        return MatrixRow(target, "already there" if outcome == "built" else outcome, build, reason)

    def pin(self, engine_id: str) -> EngineInfo:
        """Keep an engine whatever gc's rules say (admin scope); `unpin` undoes it."""
        return EngineInfo.model_validate(self._request("POST", f"/v1/engines/{engine_id}/pin").json())

    def unpin(self, engine_id: str) -> EngineInfo:
        return EngineInfo.model_validate(self._request("POST", f"/v1/engines/{engine_id}/unpin").json())

    def gc(self, keep_last: int, unused_days: float, dry_run: bool = True) -> GcReportInfo:
        """Remove engines nobody needs and compact the timing caches (admin scope; a dry run unless
        dry_run=False): see `trtfarm gc`."""
        body = {"keep_last": keep_last, "unused_days": unused_days, "dry_run": dry_run}
        return GcReportInfo.model_validate(self._request("POST", "/v1/gc", json=body).json())

    def delete_model(self, model: str) -> ModelDeleted:
        """Remove a model with its builds, engines and the blobs nothing else uses (admin scope)."""
        return ModelDeleted.model_validate(self._request("DELETE", f"/v1/models/{model}").json())

    def drain(self, worker: str) -> WorkerInfo:
        """The worker finishes its current build and takes no new one (admin scope); `resume` undoes it."""
        return WorkerInfo.model_validate(self._request("POST", f"/v1/workers/{quote(worker, safe='')}/drain").json())

    def resume(self, worker: str) -> WorkerInfo:
        return WorkerInfo.model_validate(self._request("POST", f"/v1/workers/{quote(worker, safe='')}/resume").json())


def _outcome(build: BuildInfo) -> tuple[str, str | None]:
    status = str(build.status)
    if status == "succeeded":
        return "built", None
    if status in ("failed", "cancelled"):
        return status, f"{build.error.code}: {build.error.message}" if build.error else None
    return "waiting", build.progress or build.waiting_reason
