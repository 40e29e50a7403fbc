"""`trtfarm`: the client commands (talk to TRTFARM_URL through the SDK), plus the server commands (`up`,
`api`, `worker`, `dispatcher`, `db upgrade`) that the server code registers through the `trtfarm.commands`
entry points (api/cli.py, workers/cli.py). Without the server extras those commands say what to install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from registry.cliplugins import PLUGIN_HELP
from registry.clitrtexec import HELP as TRTEXEC_HELP
from registry.clitypes import SUBMIT_HELP as TYPING_HELP
from registry.clitypes import apply_flags as apply_typing_flags
from registry.errors import FarmError, InvalidSpec
from registry.status import BuildStatus

COMMANDS_GROUP = "trtfarm.commands"
CALIBRATION_HELP = {
    "calibration": "INT8 calibration: a data set (.npz, one array per model input, axis 0 = samples; or a folder "
                   "of such batches, merged in name order) or a TensorRT calibration cache, uploaded unless the "
                   "farm has it; or the sha256:… digest of an upload",
    "algorithm": "the INT8 calibrator for a data set: entropy2 (the default), entropy, minmax or legacy",
}
app = typer.Typer(help="trtfarm: build farm and registry for TensorRT / ONNX Runtime engines.", no_args_is_help=True)
out = Console(soft_wrap=True)  # never hard-wrap: paths, logs and ids must survive pipes and copy-paste
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    import sys

    if not _client_command(sys.argv[1:]):  # a client command needs no server packages: none are imported
        add_server_commands(app)
    try:
        app()
    except FarmError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise SystemExit(1) from None


def _client_command(args: list[str]) -> bool:
    first = next((a for a in args if not a.startswith("-")), None)
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    return first in names | {g.name for g in app.registered_groups}


def add_server_commands(cli: typer.Typer) -> None:
    """Register the commands the installed server packages offer (entry points `trtfarm.commands`: a
    typer command function, or a typer app for a command group)."""
    from importlib.metadata import entry_points  # 25 ms of imports a client command does not need

    known = {c.name for c in cli.registered_commands} | {g.name for g in cli.registered_groups}
    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name in known:
            continue
        try:
            command = ep.load()
        except ImportError as exc:
            cli.command(ep.name, help="(needs the server extras)", add_help_option=False,
                        context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})(_missing(ep.name, exc))
            continue
        if isinstance(command, typer.Typer):
            cli.add_typer(command, name=ep.name)
        else:
            cli.command(ep.name)(command)


def _missing(name: str, exc: ImportError) -> Any:
    def command() -> None:
        err.print(f"`trtfarm {name}` needs the server packages ({exc.name or exc} is not installed): "
                  "pip install 'trtfarm[all]'", markup=False)
        raise typer.Exit(2)

    return command


# --- client commands --------------------------------------------------------------------------


def _farm():  # noqa: ANN202
    from registry.client import Farm

    return Farm()


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@app.command()
def submit(
    model: str = typer.Argument(..., help="path to a .onnx (uploaded if the farm lacks it) or a model id"),
    target: str = typer.Option(..., "--target", "-t", help="kind==version@device; parts may be omitted"),
    precision: list[str] = typer.Option([], "--precision", help="fp16, bf16, fp8, int8, int4 (repeatable)"),
    shape: list[str] = typer.Option([], "--shape",
                                    help="NAME:MIN,OPT,MAX e.g. input:1x3x224x224,8x3x224x224,32x3x224x224"),
    optimization_level: Optional[int] = typer.Option(None, "--opt-level",
                                                     help="TensorRT builder optimization level 0-5"),
    hardware_compatibility: Optional[str] = typer.Option(None, "--hardware-compat",
                                                         help="none, ampere_plus, same_compute_capability"),
    version_compatible: bool = typer.Option(False, "--version-compatible"),
    refit: Optional[str] = typer.Option(None, help="none, refit, refit_identical"),
    workspace_mib: Optional[int] = typer.Option(None, "--workspace-mib"),
    ort_level: Optional[str] = typer.Option(None, "--ort-level", help="disable, basic, extended, layout, all"),
    spec_json: Optional[str] = typer.Option(None, "--spec", help="a JSON spec (text or @file); flags override it"),
    bench_iterations: Optional[int] = typer.Option(None, "--bench-iterations",
                                                   help="timed runs of the engine (default: the worker's, 50)"),
    bench_seconds: Optional[float] = typer.Option(None, "--bench-seconds",
                                                  help="end the benchmark after this long (default 5; >= 3 runs)"),
    no_bench: bool = typer.Option(False, "--no-bench", help="validate the engine but do not time it"),
    sanitize: bool = typer.Option(False, "--sanitize",
                                  help="sanitize the model first: fold constants, convert opset < 7, name '?' dims "
                                       "(the steps: --spec '{\"sanitize\": {...}}')"),
    layer_precision: list[str] = typer.Option([], "--layer-precision", help=TYPING_HELP["layer_precision"]),
    layer_output_types: list[str] = typer.Option([], "--layer-output-types", help=TYPING_HELP["layer_output_types"]),
    precision_constraints: Optional[str] = typer.Option(None, "--precision-constraints",
                                                        help=TYPING_HELP["precision_constraints"]),
    io_format: list[str] = typer.Option([], "--io-format", help=TYPING_HELP["io_format"]),
    calibration: Optional[str] = typer.Option(None, "--calibration", help=CALIBRATION_HELP["calibration"]),
    calibration_algorithm: Optional[str] = typer.Option(None, "--calibration-algorithm",
                                                        help=CALIBRATION_HELP["algorithm"]),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_HELP),
    trtexec: Optional[str] = typer.Option(None, "--trtexec", help=TRTEXEC_HELP),
    wait: bool = typer.Option(False, "--wait", help="wait for the build and show its progress"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Submit a build (deduplicated by key: the same request returns the same build)."""
    spec = _spec_from_flags(spec_json, precision=precision, shape=shape, optimization_level=optimization_level,
                            hardware_compatibility=hardware_compatibility, version_compatible=version_compatible,
                            refit=refit, workspace_mib=workspace_mib, ort_level=ort_level, sanitize=sanitize,
                            bench={"iterations": bench_iterations, "max_seconds": bench_seconds,
                                   "enabled": False if no_bench else None})
    spec = apply_typing_flags(spec, layer_precision=layer_precision, layer_output_types=layer_output_types,
                              precision_constraints=precision_constraints, io_format=io_format)
    spec = {**spec, "calibration_algorithm": calibration_algorithm} if calibration_algorithm else spec
    farm = _farm()
    if trtexec:
        from registry.clitrtexec import apply_trtexec

        spec, calibration = apply_trtexec(trtexec, spec, spec_json=spec_json, calibration=calibration, model=model,
                                          target=target, farm=farm)
    build = (_submit_with_progress(farm, model, target, spec, calibration, plugin) if wait
             else farm.submit(model, target, spec, calibration=calibration, plugins=plugin, wait=False))
    if as_json:
        _print_json(build.model_dump(mode="json"))
    else:
        _print_build(build)
    if wait and build.status != BuildStatus.SUCCEEDED:
        raise typer.Exit(1)


def _spec_from_flags(spec_json: str | None, **flags: Any) -> dict:
    from registry.spec import ShapeRange

    spec = _json_spec(spec_json) or {}
    if flags["precision"]:
        spec["precision"] = list(flags["precision"])
    if flags["shape"]:
        profile = {}
        for item in flags["shape"]:
            name, sep, ranges = item.rpartition(":")
            if not sep or not name:
                raise typer.BadParameter(f"--shape {item!r}: use NAME:MIN,OPT,MAX")
            if name in profile:
                raise InvalidSpec(f"--shape gives input {name!r} two ranges; one range per input (for several "
                                  "optimization profiles, use --spec with a list of profiles)")
            profile[name] = ShapeRange.parse(ranges).model_dump(mode="json")
        spec["profiles"] = [profile]
    for name in ("optimization_level", "hardware_compatibility", "refit", "workspace_mib"):
        if flags[name] is not None:
            spec[name] = flags[name]
    if flags["version_compatible"]:
        spec["version_compatible"] = True
    if flags["ort_level"]:
        spec.setdefault("onnxruntime", {})["graph_optimization_level"] = flags["ort_level"]
    if flags.get("sanitize") and not spec.get("sanitize"):  # the steps --spec names stand
        spec["sanitize"] = True
    bench = {k: v for k, v in flags["bench"].items() if v is not None}
    if bench:
        spec["bench"] = {**spec.get("bench", {}), **bench}
    return spec


def _json_spec(text: str | None) -> dict | None:
    """--spec: JSON text or @file holding a JSON object; a clear error otherwise."""
    if not text:
        return None
    where = "--spec"
    if text.startswith("@"):
        where = f"--spec file {text[1:]!r}"
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidSpec(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"{where} is not valid JSON ({exc}); e.g. --spec '{{\"precision\": [\"fp16\"]}}'") from None
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{where} must be a JSON object like {{\"precision\": [\"fp16\"]}}, "
                          f"not {type(spec).__name__}")
    return spec


def _submit_with_progress(farm, model: str, target: str, spec: dict, calibration: str | None = None,  # noqa: ANN001, ANN202
                          plugins: list[str] | None = None):
    """Submit and wait, showing progress on stderr: a spinner on a terminal, else one line per change
    (CI logs). A build that ends other than succeeded is returned, not raised: the caller prints it."""
    show, done = _progress_view()
    try:
        return farm.submit(model, target, spec, calibration=calibration, plugins=plugins or (), wait=True,
                           progress=show)
    except FarmError as exc:
        if getattr(exc, "build", None) is not None:
            show(exc.build)
            return exc.build
        raise
    finally:
        done()


def _progress_view():  # noqa: ANN202
    """(show(build), done()): a rich spinner on a terminal; elsewhere `[  12.3s] build ID status: detail`
    lines, printed when the status or the detail changes."""
    import time

    if err.is_terminal:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err)
        bar.start()
        task = bar.add_task("submitting", total=None)
        return (lambda e: bar.update(task, description=_line(getattr(e, "build", e))[:150]), bar.stop)
    started, last = time.monotonic(), [None]

    def line(event) -> None:  # noqa: ANN001 - a BuildEvent (registry/eventclient.py), or a BuildInfo
        text = _line(getattr(event, "build", event))
        if text != last[0]:
            last[0] = text
            err.print(f"[{time.monotonic() - started:7.1f}s] {text}", markup=False, highlight=False)

    return line, lambda: None


def _line(build) -> str:  # noqa: ANN001
    return f"build {build.id} {build.status}: {_detail(build)}".rstrip(": ")


def _detail(build) -> str:  # noqa: ANN001
    if build.error:
        return f"{build.error.code}: {build.error.message}"
    return build.progress or build.waiting_reason or ""


def _print_build(build) -> None:  # noqa: ANN001
    out.print(f"build [bold]{build.id}[/bold] {build.status}  target {build.target}  key {build.key[:16]}…")
    if build.waiting_reason:
        out.print(f"  waiting: {build.waiting_reason}")
    if build.error:
        out.print(f"  [red]{build.error.code}[/red]: {escape(build.error.message)}")
    for warning in build.warnings:
        out.print(f"  [yellow]warning[/yellow] {warning.code}: {escape(warning.message)}")
    if build.engine_id:
        out.print(f"  engine {build.engine_id}")


@app.command()
def fetch(
    model: str = typer.Argument(..., help="model id or a .onnx path (its id is computed locally)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="also copy the engine here"),
    runtime: str = typer.Option("auto", help="'auto' or e.g. tensorrt==8.6.0@h100-80gb-hbm3 / "
                                "onnxruntime==1.23.2@x86_64-avx2"),
    spec_json: Optional[str] = typer.Option(None, "--spec", help="only engines built with this spec (JSON)"),
    shape: list[str] = typer.Option([], "--shape", help="NAME:1x3x224x224 (repeatable): an engine whose "
                                    "profiles hold these shapes"),
    refresh: bool = typer.Option(False, "--refresh", help="ask the farm again instead of the local index"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fetch the engine your runtime can load into the local cache (sha256 verified)."""
    from registry import quickfetch
    from registry.localfiles import copy_out

    spec = _json_spec(spec_json)
    shapes = _fetch_shapes(shape)
    wanted = json.dumps({"spec": spec, "shapes": shapes}, sort_keys=True) if shapes else None
    question = (model, runtime, wanted or (json.dumps(spec, sort_keys=True) if spec is not None else None))
    fresh = refresh or (output is not None and output.is_dir())
    cache_path = None if fresh else quickfetch.answer(*question)  # no SDK loaded for it
    if cache_path is not None:
        path = copy_out(cache_path, output, cache_path.name) if output else cache_path
    else:
        from registry.digests import model_id as id_of

        farm = _farm()
        layout = farm.model_files(Path(model)) if Path(model).exists() else []  # hashed once, if at all
        model_id = id_of(f for f, _ in layout) if layout else model
        files = [local for _, local in layout]
        path = farm.fetch(model_id, runtime=runtime, spec=spec, dest=output, shapes=shapes, refresh=refresh)
        cache_path = farm.cached(model_id, runtime=runtime, spec=spec, shapes=shapes) or path  # local: no network
        quickfetch.remember(*question, Path(cache_path), "sha256:" + Path(cache_path).name.split(".")[0],
                            Path(cache_path).stat().st_size, files)
    path = _with_engine_suffix(Path(path), Path(cache_path), output)
    if as_json:
        _print_json({"path": str(Path(path).absolute()), "cache_path": str(Path(cache_path).absolute())})
    else:
        out.print(str(path), markup=False, highlight=False)


def _fetch_shapes(items: list[str]) -> dict[str, list[int]] | None:
    """--shape NAME:1x3x224x224 items of fetch (one shape per input, not a range)."""
    if not items:
        return None  # nothing imported: a repeated fetch is answered without the SDK's modules
    from registry.spec import parse_shape

    shapes: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        if not sep or not name or name in shapes:
            raise InvalidSpec(f"--shape {item!r}: give NAME:1x3x224x224, one per input")
        try:
            shapes[name] = list(parse_shape(dims))
        except ValueError:
            raise InvalidSpec(f"--shape {item!r}: dimensions must be integers separated by 'x'") from None
    return shapes or None


def _with_engine_suffix(path: Path, cache_path: Path, output: Path | None) -> Path:
    """ONNX Runtime reads a file as an ORT-format model by its `.ort` suffix (otherwise as ONNX, and fails):
    a copy written under another name gets the suffix added, and the user is told."""
    if output is None or path == cache_path or cache_path.suffix != ".ort" or path.suffix == ".ort":
        return path
    renamed = path.with_name(path.name + ".ort")
    path.replace(renamed)
    err.print(f"note: wrote {renamed} (ONNX Runtime loads ORT-format engines by their .ort suffix)",
              markup=False, highlight=False)
    return renamed


@app.command()
def builds(status: Optional[str] = None, model: Optional[str] = None, limit: int = 20,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """List builds, newest first."""
    items = _farm().builds(status=status, model=model, limit=limit).items
    if as_json:
        return _print_json([b.model_dump(mode="json") for b in items])
    table = Table("id", "status", "target", "model", "attempt", "worker", "detail")
    for b in items:
        detail = (b.error.message if b.error else b.waiting_reason or b.progress or "")[:60]
        table.add_row(b.id[:12], b.status, b.target, b.model[7:19], str(b.attempt), b.worker or "", detail)
    out.print(table)


@app.command("build")
def show_build(build_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one build: status, error, warnings (what sanitizing did, among them), engine."""
    info = _farm().build(build_id)
    if as_json:
        return _print_json(info.model_dump(mode="json"))
    _print_build(info)
    return None


@app.command()
def log(build_id: str, follow: bool = typer.Option(False, "-f", "--follow",
                                                  help="print new lines as the build runs, until it ends")) -> None:
    """Print a build's log."""
    farm = _farm()
    if not follow:
        out.print(farm.log(build_id), markup=False, highlight=False)
        return
    from registry.clievents import follow_log

    code = follow_log(farm, build_id, lambda line: out.print(line, markup=False, highlight=False))
    raise typer.Exit(_follow_by_polling(farm, build_id) if code is None else code)


def _follow_by_polling(farm, build_id: str) -> int:  # noqa: ANN001
    """`log -f` against a farm without event streams: the log's tail every second."""
    import time

    shown: list[str] = []
    while True:
        build = farm.build(build_id)  # before the log: a build that ended has its whole log by now
        text = "" if build.status == BuildStatus.QUEUED else farm.log(build_id)
        if text.startswith(f"(build {build.id} is ") and text.rstrip().endswith("no log yet)"):
            text = ""  # the farm's placeholder, not a line of the log
        lines = text.splitlines()
        for new in lines[_overlap(shown, lines):]:
            out.print(new, markup=False, highlight=False)
            shown.append(new)
        if build.done:
            return 0 if build.status == BuildStatus.SUCCEEDED else 1
        time.sleep(1.0)


def _overlap(shown: list[str], lines: list[str]) -> int:
    """How many of `lines` (a later view of the log: its tail while running, all of it at the end) were shown
    already: the longest prefix of `lines` that ends the shown lines; else, when the view starts before what
    was shown (the whole log after a tail), the place where the last shown lines end in it."""
    if not shown:
        return 0
    for k in range(min(len(shown), len(lines)), 0, -1):
        if lines[k - 1] == shown[-1] and lines[:k] == shown[-k:]:
            return k
    m = min(len(shown), 50)
    for end in range(len(lines), m - 1, -1):
        if lines[end - m:end] == shown[-m:]:
            return end
    return 0


@app.command()
def cancel(build_id: str) -> None:
    """Cancel a queued or running build."""
    _print_build(_farm().cancel(build_id))


class _ListByDefault(TyperGroup):
    """`trtfarm engines MODEL` lists (as `engines list MODEL`); `engines pin ID` and `unpin ID` are commands."""

    def resolve_command(self, ctx, args):  # noqa: ANN001, ANN202
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "list")
        return super().resolve_command(ctx, args)


engines_app = typer.Typer(cls=_ListByDefault, help="A model's engines: list them (engines MODEL), pin, unpin.")
app.add_typer(engines_app, name="engines")


@engines_app.command("pin")
def pin_engine(engine_id: str) -> None:
    """Keep an engine whatever `trtfarm gc` would remove (admin)."""
    e = _farm().pin(engine_id)
    out.print(f"engine {e.id} pinned", markup=False, highlight=False)


@engines_app.command("unpin")
def unpin_engine(engine_id: str) -> None:
    """Let gc's rules apply to a pinned engine again (admin)."""
    e = _farm().unpin(engine_id)
    out.print(f"engine {e.id} unpinned", markup=False, highlight=False)


@engines_app.command("list")
def engines(model: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a model's engines (a .onnx path or a model id)."""
    items = _farm().engines(model)
    if as_json:
        return _print_json([e.model_dump(mode="json") for e in items])
    if not items:
        err.print(f"no engines yet for {model}; build one with `trtfarm submit {model} --target ...`",
                  markup=False, highlight=False)
        return None
    table = Table("id", "toolchain", "version", "device", "profile (min..max)", "precision", "level", "compat",
                  "size", "valid", "p50 ms", "pinned")
    for e in items:
        profile, precision, level = spec_columns(e.spec, e.toolchain)
        table.add_row(e.id[:12], e.toolchain, e.version, e.device, profile, precision, level, e.hardware_compatibility,
                      str(e.size), str(e.validation_passed),
                      f"{e.latency_p50_ms:.3f}" if e.latency_p50_ms is not None else "", "yes" if e.pinned else "")
    out.print(table)
    return None


def spec_columns(spec: dict, toolchain: str) -> tuple[str, str, str]:
    """(profile ranges, precisions, optimization level) of an engine's spec, as `trtfarm engines` shows them."""
    def dims(shape: list[int]) -> str:
        return "x".join(str(d) for d in shape)

    profiles = "\n".join(", ".join(f"{name}:{dims(r['min'])}..{dims(r['max'])}" for name, r in p.items())
                         for p in spec.get("profiles") or []) or "static"
    if toolchain == "onnxruntime":
        return profiles, "fp32", (spec.get("onnxruntime") or {}).get("graph_optimization_level", "")
    precision = ",".join(spec.get("precision") or []) or "fp32"
    precision += "+tf32" if spec.get("tf32", True) else ""
    return profiles, precision, f"opt {spec.get('optimization_level', 3)}"


@app.command("delete-model")
def delete_model(model: str, yes: bool = typer.Option(False, "--yes", help="no question asked")) -> None:
    """Remove a model with its builds, engines and the blobs nothing else uses (admin)."""
    if not yes and not typer.confirm(f"remove model {model} with all its builds and engines?"):
        raise typer.Exit(1)
    done = _farm().delete_model(model)
    out.print(f"removed model {done.model}: {done.engines} engine(s), {done.files} file(s), "
              f"{done.blobs_removed} blob(s)", markup=False, highlight=False)


workers_app = typer.Typer(help="The fleet's workers: list them, drain one, resume it.", invoke_without_command=True)
app.add_typer(workers_app, name="workers")


@workers_app.callback()
def workers(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the fleet's workers, what they serve and what they do."""
    if ctx.invoked_subcommand is not None:
        return None
    items = _farm().workers()
    if as_json:
        return _print_json([w.model_dump(mode="json") for w in items])
    table = Table("name", "state", "toolchains", "queues", "building", "last seen")
    for w in items:
        tcs = ", ".join(f"{t['kind']}=={t['version']}" for t in w.toolchains)
        table.add_row(w.name, w.state, tcs, "\n".join(w.queues), w.current_build or "",
                      w.last_seen.strftime("%Y-%m-%d %H:%M:%S"))
    out.print(table)
    return None


@workers_app.command("drain")
def drain_worker(name: str) -> None:
    """The worker finishes its current build and takes no new one (until `resume`; it survives restarts)."""
    w = _farm().drain(name)
    out.print(f"worker {w.name}: {w.state}" + (f" (finishing build {w.current_build})" if w.current_build else ""),
              markup=False, highlight=False)


@workers_app.command("resume")
def resume_worker(name: str) -> None:
    """A drained worker takes builds again."""
    w = _farm().resume(name)
    out.print(f"worker {w.name}: {w.state}", markup=False, highlight=False)


from registry.clifleet import register as _register_fleet_commands  # noqa: E402 - it imports from here
from registry.cliinspect import register as _register_inspect  # noqa: E402
from registry.cliplugins import register as _register_plugin_commands  # noqa: E402
from registry.clitypes import register as _register_engine_show  # noqa: E402

_register_fleet_commands(app)
_register_plugin_commands(app)
_register_inspect(app)
_register_engine_show(engines_app)

if __name__ == "__main__":
    main()
