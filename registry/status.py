"""A build's status: `queued → running → succeeded | failed | cancelled`. Standard library only."""

from __future__ import annotations

from enum import Enum


class BuildStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Succeeded, failed or cancelled: nothing runs any more (a resubmit may queue it again)."""
        return self in TERMINAL

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED})
