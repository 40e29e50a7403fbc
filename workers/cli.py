"""The worker-side server commands of `trtfarm` (registered through the `trtfarm.commands` entry points):
`up` (the embedded farm), `worker`, `dispatcher`. Heavy imports stay inside the commands."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from registry.settings import DEFAULT_PORT, Settings

out = Console(soft_wrap=True)


def settings_with(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def up(
    home: Optional[Path] = typer.Option(None, help="where the embedded farm keeps its database, blobs and broker"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(DEFAULT_PORT),
    gpus: str = typer.Option("auto", help="'auto' (one worker per GPU the TensorRT toolchain sees), 'none', or 0,1"),
    workers: int = typer.Option(1, "--workers", min=1, help="CPU workers to start when there is no GPU worker "
                                "(each builds one job at a time)"),
    demo: bool = typer.Option(False, help="once up, build a real model, fetch it through the SDK and run it"),
    exit_after_demo: bool = typer.Option(False, help="stop the farm after the demo (exit 0 if it passed)"),
) -> None:
    """Run the embedded farm: API + dispatcher + worker(s) on SQLite, a blob folder and a SQLite broker."""
    from workers.embedded import run_embedded

    settings = settings_with(home=home)
    gpu_list = _gpus(settings, gpus)
    outcome: dict[str, bool] = {}
    after = _demo_hook(settings, exit_after_demo, outcome) if demo else None
    run_embedded(settings, host, port, gpus=gpu_list, announce=out.print, after_start=after, cpu_workers=workers)
    if exit_after_demo and not outcome.get("ok"):
        raise typer.Exit(1)


def _gpus(settings: Settings, choice: str) -> list[int] | None:
    if choice == "none":
        return None
    if choice != "auto":
        return [int(g) for g in choice.split(",") if g.strip()]
    interpreters = settings.toolchain_interpreters()
    if "tensorrt" not in interpreters:
        return None
    from workers.launcher import probe

    return [d["index"] for d in probe("tensorrt", interpreters["tensorrt"]).devices] or None


def _demo_hook(settings: Settings, exit_after: bool, outcome: dict):  # noqa: ANN202
    def hook(url: str) -> None:
        from workers.demo import run_demo

        try:
            outcome["ok"] = run_demo(url, settings.home, out.print)
        except Exception as exc:  # noqa: BLE001 - the demo reports, the farm stays up
            out.print(f"[red]demo failed:[/red] {exc}")
            outcome["ok"] = False
        if exit_after:  # a graceful stop: the server returns, then the workers are stopped
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def worker(gpu: Optional[int] = typer.Option(None, help="the GPU this worker owns (CUDA_VISIBLE_DEVICES)")) -> None:
    """Run one worker: probes TRTFARM_TOOLCHAINS, serves the queues its devices can build for."""
    from workers.worker import run_worker

    run_worker(settings_with(gpu=gpu))


def dispatcher() -> None:
    """Run the dispatcher alone: relay the outbox to the broker and run the reaper (Ctrl-C stops it)."""
    from registry import events
    from workers.dispatcher import run_dispatcher

    events.configure()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.print("dispatcher: relaying the outbox and reaping expired leases")
    try:
        run_dispatcher(Settings(), stop)
    except KeyboardInterrupt:
        stop.set()
