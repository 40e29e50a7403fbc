"""Lease renewal while a build runs: a background thread extends the build's lease, publishes progress
and the log tail, and notices a cancel request or a lost lease (another attempt took the build over)."""

from __future__ import annotations

import threading
import time

from registry import events
from registry.db.session import retry_transient
from registry.errors import BuildCancelled
from registry.services import attempts
from registry.services.attempts import Claim, Lease
from workers.context import WorkerContext
from workers.launcher import BuildLog


class LeaseKeeper:
    """Use as a context manager around an attempt; `step()` at each stage, `should_stop()` for runners."""

    def __init__(self, ctx: WorkerContext, claim: Claim, log: BuildLog) -> None:
        self.ctx, self.claim, self.log = ctx, claim, log
        self.progress = "starting"
        self.seconds: dict[str, float] = {}  # wall time per stage so far (the current one once left)
        self._since = self.started = time.monotonic()
        self.state = Lease.OK
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"lease-{claim.build_id[:8]}")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def step(self, progress: str) -> None:
        """Enter a stage: log it, renew now; BuildCancelled when the build should stop."""
        previous = self.progress
        self.lap()
        events.event(self.claim.build_id, "stage", stage=progress, previous=previous,
                     seconds=self.seconds.get(previous))
        lines = self.log.take_new()  # the previous stage's lines come before the stage in the event stream
        self.progress = progress
        self.log.section(progress)
        stage = (progress, self.seconds.get(previous))
        retry_transient(lambda: self.renew(stage, lines), what=f"renew the lease of {self.claim.build_id}")
        if self.should_stop():
            raise BuildCancelled(f"stopped before {progress}: the lease says {self.state.value}")

    def lap(self) -> None:
        """Add the time since the last step (or lap) to the current stage's seconds."""
        now = time.monotonic()
        self.seconds[self.progress] = round(self.seconds.get(self.progress, 0.0) + now - self._since, 3)
        self._since = now

    def renew(self, stage: tuple[str, float | None] | None = None, lines: list[str] | None = None) -> None:
        """Extend the lease, publishing progress, the log's tail and its new lines (and `stage`, just entered)."""
        lines = self.log.take_new() if lines is None else lines
        self.state = attempts.renew(self.ctx.db, self.claim, self.ctx.settings.lease_s, progress=self.progress,
                                    log_tail=self.log.tail_text(), stage=stage, log_lines=lines)

    def should_stop(self) -> bool:
        return self.state != Lease.OK

    def _loop(self) -> None:
        interval = max(1.0, min(5.0, self.ctx.settings.lease_s / 4))
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the build
                self.log.write(f"lease renewal failed: {exc}")
