"""The fleet: live workers, what they offer, and filling partial targets from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, Worker, utcnow
from registry.errors import AmbiguousTarget, InvalidTarget, UnservedTarget
from registry.schemas import WorkerInfo
from registry.spec import BuildSpec
from registry.status import BuildStatus
from registry.targets import AMPERE_PLUS, Target, cc_tuple, device_class


@dataclass(frozen=True)
class Offer:
    """One (toolchain version, device) a live worker can build for."""

    kind: str
    version: str
    sku: str | None  # GPU SKU slug, or None for a CPU device
    cc: str | None
    cpu: str | None
    features: tuple[str, ...] | None
    worker: str

    @property
    def device(self) -> str:
        return self.sku or self.cpu or "?"


@dataclass(frozen=True)
class Beat:
    """What a worker advertises on every heartbeat."""

    name: str
    hostname: str
    toolchains: list[dict]
    devices: list[dict]
    queues: list[str]
    current_build: str | None = None
    instance: str | None = None  # the process holding the name (registry.services.workerstate)


@dataclass(frozen=True)
class BeatReply:
    """What a heartbeat learns: whether to take no new build, and whether another process holds the name."""

    drain: bool
    name_lost: bool = False


def heartbeat(db: Database, beat: Beat) -> BeatReply:
    """Record that the worker is alive, what it serves and what it builds now (unless another process took
    its name over: then nothing is written and the reply says so)."""
    with db.session() as s:
        worker = s.get(Worker, beat.name)
        if worker is None:
            worker = Worker(name=beat.name, hostname=beat.hostname, toolchains=beat.toolchains,
                            devices=beat.devices, queues=beat.queues, instance=beat.instance)
            s.add(worker)
        elif beat.instance and worker.instance not in (None, beat.instance):
            return BeatReply(drain=False, name_lost=True)
        worker.hostname, worker.toolchains, worker.devices = beat.hostname, beat.toolchains, beat.devices
        worker.queues, worker.current_build, worker.last_seen = beat.queues, beat.current_build, utcnow()
        worker.instance = beat.instance or worker.instance
        return BeatReply(drain=bool(worker.drain_requested))


def worker_infos(db: Database, live_s: int) -> list[WorkerInfo]:
    """Every worker the farm has seen: live or lost, and what it is doing (building, idle, draining, drained)."""
    with db.session() as s:
        live = {w.name for w in live_workers(s, live_s)}
        # what each worker runs now, from the builds (a heartbeat's current_build is up to 5 s old)
        running = dict(s.execute(select(Build.worker, Build.id).where(Build.status == BuildStatus.RUNNING)).all())
        infos = []
        for w in s.scalars(select(Worker).order_by(Worker.name)):
            current = running.get(w.name) if w.name in live else w.current_build
            infos.append(WorkerInfo.model_validate(w).model_copy(update={
                "live": w.name in live, "current_build": current, "state": worker_state(w, w.name in live, current)}))
        return infos


def worker_state(w: Worker, live: bool, current_build: str | None) -> str:
    if not live:
        return "lost"
    if w.drain_requested:
        return "draining" if current_build else "drained"
    return "building" if current_build else "idle"


def live_workers(session: Session, live_s: int) -> list[Worker]:
    since = utcnow() - timedelta(seconds=live_s)
    return list(session.scalars(select(Worker).where(Worker.last_seen >= since).order_by(Worker.name)))


def offers(workers: list[Worker]) -> list[Offer]:
    result = []
    for w in workers:
        for tc in w.toolchains:
            feats = tuple(tc["features"]) if tc.get("features") is not None else None
            for dev in w.devices:
                if tc["kind"] == "tensorrt" and dev.get("sku"):
                    result.append(Offer("tensorrt", tc["version"], dev["sku"], dev["cc"], None, feats, w.name))
                elif tc["kind"] == "onnxruntime" and dev.get("device"):
                    result.append(Offer("onnxruntime", tc["version"], None, None, dev["device"], feats, w.name))
    return result


def serves(offer: Offer, kind: str, version: str | None, device: str | None) -> bool:
    if offer.kind != kind or (version and offer.version != version):
        return False
    if not device:
        return True
    cls = device_class(device)
    if cls == "cpu":
        return offer.cpu == device
    if cls == "sku":
        return offer.sku == device
    if cls == "cc":
        return offer.cc == device
    return offer.cc is not None and cc_tuple(offer.cc) >= (8, 0)  # ampere_plus


def complete_target(target: Target, spec: BuildSpec, fleet: list[Offer]) -> tuple[Target, BuildSpec]:
    """Fill a partial target from the fleet and derive the key's device component.

    Device component (docs/design.md): the SKU slug with hardware compatibility `none`, sm_XX with
    `same_compute_capability`, `ampere_plus` with `ampere_plus`. A target `@ampere_plus` implies the
    ampere_plus hardware compatibility level.
    """
    if target.device == AMPERE_PLUS and spec.hardware_compatibility == "none":
        spec = spec.model_copy(update={"hardware_compatibility": "ampere_plus"})
    if target.device == AMPERE_PLUS and spec.hardware_compatibility != "ampere_plus":
        raise InvalidTarget(f"target {target} builds an ampere_plus plan, but the spec asks for hardware_compatibility "
                            f"{spec.hardware_compatibility!r}; drop one of them")
    matching = [o for o in fleet if serves(o, target.kind, target.version, target.device)]
    what = "version" + (f" for device {target.device}" if target.device else "")
    version = target.version or _one(matching, lambda o: o.version, what, target, fleet)
    matching = [o for o in matching if o.version == version]
    device = _key_device(target, spec, matching, fleet)
    return Target(target.kind, version, device), spec


def _key_device(target: Target, spec: BuildSpec, matching: list[Offer], fleet: list[Offer]) -> str:
    if target.kind == "onnxruntime":
        return target.device or _one(matching, lambda o: o.cpu, "CPU device", target, fleet)
    level = spec.hardware_compatibility
    if level == "ampere_plus":
        if target.device and device_class(target.device) == "cc" and cc_tuple(target.device) < (8, 0):
            raise InvalidTarget(f"target {target}: ampere_plus needs compute capability >= 8.0")
        return AMPERE_PLUS
    if level == "same_compute_capability":
        if target.device and device_class(target.device) == "cc":
            return target.device
        return _one(matching, lambda o: o.cc, "compute capability", target, fleet)
    if target.device == AMPERE_PLUS:
        raise InvalidTarget(f"target {target} needs hardware_compatibility ampere_plus")
    if target.device and device_class(target.device) == "sku":
        return target.device
    return _one(matching, lambda o: o.sku, "GPU SKU", target, fleet)


def _one(matching: list[Offer], part, what: str, target: Target, fleet: list[Offer]) -> str:  # noqa: ANN001
    values = sorted({part(o) for o in matching if part(o)})
    if len(values) == 1:
        return values[0]
    offered = ", ".join(sorted({f"{o.kind}=={o.version}@{o.device}" for o in fleet})) or "nothing (no live worker)"
    if not values:
        raise UnservedTarget(
            f"target {target}: no live worker offers a matching {what}, so it cannot be filled in; "
            f"the fleet offers {offered}. Give the full target kind==version@device to queue it anyway.",
            details={"offered": offered},
        )
    raise AmbiguousTarget(
        f"target {target} is ambiguous: the fleet offers several of {what}: {', '.join(values)}. "
        "Name one in the target.",
        details={"choices": values},
    )


def waiting_reason(queue: str, workers: list[Worker]) -> str | None:
    """Why a build on `queue` would wait, or None when a live worker that is not drained serves it."""
    serving = [w for w in workers if queue in w.queues]
    if any(not w.drain_requested for w in serving):
        return None
    if serving:
        names = ", ".join(w.name for w in serving)
        return (f"queue {queue} is served only by drained worker(s) {names}; the build stays queued until one "
                "is resumed (trtfarm workers resume NAME) or another worker serves it")
    served = sorted({q for w in workers if not w.drain_requested for q in w.queues})
    return (
        f"no live worker serves queue {queue}; the build stays queued until one does. "
        f"Queues served now: {', '.join(served) if served else 'none (no live worker)'}"
    )


def unsupported_features(spec: BuildSpec, features: tuple[str, ...]) -> list[str]:
    """Spec options (as `name` or `name=value`) that a toolchain's probe did not list."""
    wanted = spec_features(spec)
    return [f for f in wanted if f not in features]


def spec_features(spec: BuildSpec) -> list[str]:
    """The features a spec needs, in the vocabulary of the runners' --probe `features` list:
    `name` for options set away from their default, `name=value` for each chosen value of a choice."""
    default = BuildSpec()
    needed: list[str] = [f"precision={p}" for p in spec.precision]
    needed += [f"tactic_sources={t}" for t in spec.tactic_sources or ()]
    for name in ("tf32", "strongly_typed", "workspace_mib", "optimization_level", "version_compatible",
                 "exclude_lean_runtime", "strip_weights", "weight_streaming", "dla_core", "gpu_fallback"):
        if getattr(spec, name) != getattr(default, name):
            needed.append(name)
    for name in ("hardware_compatibility", "refit", "profiling_verbosity", "calibration_algorithm"):
        if getattr(spec, name) != getattr(default, name):
            needed.append(f"{name}={getattr(spec, name)}")
    return list(dict.fromkeys(needed + _typing_features(spec)))


def _typing_features(spec: BuildSpec) -> list[str]:
    """precision_constraints=VALUE; layer_precisions and layer_precisions.dtype=T for each type its rules name;
    io_formats.dtype=T and io_formats.format=F for each I/O tensor's type and formats (the TensorRT runner's
    names: workers/toolchains/tensorrt_runner/options.py)."""
    needed = [f"precision_constraints={spec.precision_constraints}"] if spec.precision_constraints != "none" else []
    if spec.layer_precisions:
        types = [t for rule in spec.layer_precisions for t in ((rule.precision,) if rule.precision else ())
                 + tuple(rule.output_types)]
        needed += ["layer_precisions", *(f"layer_precisions.dtype={t}" for t in dict.fromkeys(types))]
    for io in spec.io_formats.values():
        needed += [f"io_formats.dtype={io.dtype}", *(f"io_formats.format={f}" for f in io.formats)]
    return needed
