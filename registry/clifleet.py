"""`trtfarm matrix`, `rollout`, `gc`: the fleet-wide client commands, added to `registry.cli`'s app by
`register` (kept apart to keep registry/cli.py short)."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI (`registry.cli` calls it on its app, also when run as __main__)."""
    app.command()(matrix)
    app.command()(rollout)
    app.command()(gc)


def matrix(
    model: str = typer.Argument(..., help="path to a .onnx (uploaded if the farm lacks it) or a model id"),
    toolchain: Optional[str] = typer.Option(None, "--toolchain", help="only this kind (tensorrt, onnxruntime)"),
    precision: list[str] = typer.Option([], "--precision", help="fp16, bf16, fp8, int8, int4 (repeatable)"),
    shape: list[str] = typer.Option([], "--shape", help="NAME:MIN,OPT,MAX (see trtfarm submit --help)"),
    spec_json: Optional[str] = typer.Option(None, "--spec", help="a JSON spec (text or @file); flags override it"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the builds to their end (the default)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Build the model for every (version, device) the live fleet serves; one view, one summary."""
    from registry.cli import _json_spec, _print_json, _spec_from_flags
    from registry.client import Farm

    _json_spec(spec_json)  # a clear error before anything is uploaded
    spec = _spec_from_flags(spec_json, precision=precision, shape=shape, optimization_level=None,
                            hardware_compatibility=None, version_compatible=False, refit=None, workspace_mib=None,
                            ort_level=None, bench={})
    rows = Farm().matrix(model, toolchain=toolchain, spec=spec, wait=wait, progress=_progress_lines())
    if as_json:
        _print_json([{"target": r.target, "outcome": r.outcome, "reason": r.reason,
                      "build": r.build.model_dump(mode="json") if r.build else None} for r in rows])
    else:
        _summary(rows)
    if any(r.outcome in ("failed", "cancelled", "refused") for r in rows):
        raise typer.Exit(1)


def _progress_lines():  # noqa: ANN202
    """One stderr line per target whose state changed: `[  12.3s] 3/4 done  tensorrt==8.6.0@h100: building`."""
    from registry.cli import err

    started, seen = time.monotonic(), {}

    def show(rows) -> None:  # noqa: ANN001
        done = sum(r.outcome != "waiting" for r in rows)
        for r in rows:
            text = f"{r.outcome}: {r.reason}" if r.reason else r.outcome
            if seen.get(r.target) != text:
                seen[r.target] = text
                err.print(f"[{time.monotonic() - started:7.1f}s] {done}/{len(rows)} done  {r.target}: {text}",
                          markup=False, highlight=False)

    return show


def _summary(rows) -> None:  # noqa: ANN001
    from registry.cli import out

    table = Table("target", "outcome", "build", "engine", "reason")
    for r in rows:
        b = r.build
        table.add_row(r.target, r.outcome, b.id[:12] if b else "", (b.engine_id or "")[:12] if b else "",
                      (r.reason or "")[:100])
    out.print(table)
    counts = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    out.print(", ".join(f"{n} {what}" for what, n in sorted(counts.items())), markup=False, highlight=False)


def rollout(
    from_: str = typer.Option(..., "--from", help="KIND==OLD, e.g. tensorrt==8.5.3.1"),
    to: str = typer.Option(..., "--to", help="KIND==NEW, e.g. tensorrt==8.6.0"),
    since: Optional[float] = typer.Option(None, "--since", min=0, help="only engines downloaded within DAYS"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only list what would be built"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Build for NEW what the OLD engines serve (same model, spec, device); report what broke and what changed."""
    from registry.cli import _print_json
    from registry.client import Farm

    rows = Farm().rollout(from_, to, since_days=since, dry_run=dry_run, progress=_progress_lines())
    if as_json:
        _print_json([_rollout_json(r) for r in rows])
    else:
        _rollout_table(rows, to)
    if any(r.outcome in ("failed", "cancelled", "refused") for r in rows):
        raise typer.Exit(1)


def _rollout_json(r) -> dict:  # noqa: ANN001
    def engine(e) -> dict | None:  # noqa: ANN001
        if e is None:
            return None
        return {"id": e.id, "version": e.version, "latency_p50_ms": e.latency_p50_ms,
                "max_rel_error": (e.validation or {}).get("max_rel_error"), "validation_passed": e.validation_passed}

    return {"model": r.old.model, "device": r.old.device, "target": r.target, "outcome": r.outcome, "reason": r.reason,
            "build": r.build.id if r.build else None, "old": engine(r.old), "new": engine(r.new),
            "latency_ratio": r.latency_ratio}


def _rollout_table(rows, to: str) -> None:  # noqa: ANN001
    from registry.cli import out

    def num(v) -> str:  # noqa: ANN001
        return "" if v is None else f"{v:.3g}"

    table = Table("model", "device", "outcome", "p50 old ms", "p50 new ms", "new/old", "max rel err old", "new",
                  "reason")
    for r in rows:
        old_err, new_err = ((e.validation or {}).get("max_rel_error") if e else None for e in (r.old, r.new))
        table.add_row(r.old.model[7:19], r.old.device, r.outcome, num(r.old.latency_p50_ms),
                      num(r.new.latency_p50_ms if r.new else None), num(r.latency_ratio), num(old_err), num(new_err),
                      (r.reason or "")[:100])
    out.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "no engine of that version"
    out.print(f"rollout to {to}: {summary}", markup=False, highlight=False)


def gc(keep_last: int = typer.Option(..., "--keep-last", min=0, help="keep the newest N per (model, target, spec)"),
       unused_days: float = typer.Option(..., "--unused-days", min=0,
                                         help="keep engines, and timing-cache partitions, used within D days"),
       dry_run: bool = typer.Option(False, "--dry-run", help="only say what would go"),
       as_json: bool = typer.Option(False, "--json")) -> None:
    """Remove engines that are not pinned, not among the newest N, not used within D days; compact the timing
    caches: superseded generations, and partitions unused D days whose TensorRT version no live worker serves
    (admin)."""
    from registry.cli import _farm, _print_json

    report = _farm().gc(keep_last, unused_days, dry_run=dry_run)
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        gc_summary(report)


def gc_summary(report) -> None:  # noqa: ANN001
    """The engines and timing-cache blobs gc removed (or would), then what it kept and freed."""
    from registry.cli import out

    table = Table("engine", "model", "target", "size", "created", "last fetched")
    for r in report.removed:
        table.add_row(r.engine_id[:12], r.model[7:19], r.target, str(r.size), r.created_at.strftime("%Y-%m-%d"),
                      r.last_fetched_at.strftime("%Y-%m-%d %H:%M") if r.last_fetched_at else "never")
    out.print(table)
    caches = report.timing_caches_removed
    if caches:
        table = Table("timing-cache partition", "generation", "blob", "size", "reason", "since")
        for c in caches:
            table.add_row(c.partition, "" if c.generation is None else str(c.generation), c.digest[7:19], str(c.size),
                          c.reason, c.since.strftime("%Y-%m-%d %H:%M"))
        out.print(table)
    inputs = report.inputs_removed
    if inputs:
        table = Table("uploaded input", "digest", "name", "size", "uploaded")
        for i in inputs:
            table.add_row(i.kind, i.digest[7:19], i.name or "", str(i.size), i.created_at.strftime("%Y-%m-%d"))
        out.print(table)

    def counts(kept: dict[str, int]) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(kept.items())) or "none"

    verb = "would remove" if report.dry_run else "removed"
    whole = len({c.partition for c in caches if c.reason == "partition_unused"})
    lines = [f"{verb} {len(report.removed)} engine(s); kept {counts(report.kept)}",
             f"timing caches: {verb} {len(caches)} blob(s) ({sum(c.size for c in caches)} bytes), {whole} whole "
             f"partition(s); partitions kept whole: {counts(report.timing_caches_kept)}",
             f"uploaded inputs no build names: {verb} {len(inputs)} ({sum(i.size for i in inputs)} bytes)"]
    if not report.dry_run:
        lines.append(f"{report.blobs_removed} blob(s) deleted; {report.bytes_freed} engine bytes and "
                     f"{report.timing_cache_bytes_freed} timing-cache bytes freed")
    for line in lines:
        out.print(line, markup=False, highlight=False)
