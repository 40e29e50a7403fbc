"""What a worker process knows: settings, database, blob store, its toolchains, its devices, its queues."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from registry.errors import ToolchainError
from registry.queues import worker_queues
from registry.services.workerstate import new_instance
from registry.settings import Settings
from registry.stores import FarmStores
from registry.targets import cpu_device
from workers import launcher
from workers.warm import Runners


@dataclass
class WorkerContext(FarmStores):
    toolchains: list[launcher.Toolchain] = field(default_factory=list)
    current_build: str | None = None
    instance: str = field(default_factory=lambda: new_instance())  # this process, for its name's row
    claimed: str | None = None  # the name this process holds (registry.services.workerstate.claim_name)
    draining: bool = False  # its consumers are cancelled: it takes no new build
    consumer: Any = None  # Celery's consumer, once the worker is ready (signals.worker_ready)

    @property
    def name(self) -> str:
        return self.claimed or self.base_name

    @cached_property
    def base_name(self) -> str:
        """TRTFARM_WORKER_NAME, else host:gpuN or host:cpu; a suffix is added when a live worker holds it."""
        if self.settings.worker_name:
            return self.settings.worker_name
        suffix = f"gpu{self.settings.gpu}" if self.settings.gpu is not None else "cpu"
        return f"{socket.gethostname()}:{suffix}"

    @cached_property
    def gpus(self) -> list[dict]:
        """The GPUs this worker owns: its --gpu, or all that the TensorRT probe saw."""
        seen = [d for tc in self.toolchains if tc.kind == "tensorrt" for d in tc.devices]
        unique = list({d["index"]: d for d in seen}.values())
        if self.settings.gpu is None:
            return unique
        return [d for d in unique if d["index"] == self.settings.gpu]

    @cached_property
    def cpu(self) -> str:
        return cpu_device()

    @property
    def devices(self) -> list[dict]:
        return [*self.gpus, {"device": self.cpu}]

    @property
    def queues(self) -> list[str]:
        return worker_queues([{"kind": t.kind, "version": t.version, "features": t.features} for t in self.toolchains],
                             self.gpus, self.cpu)

    def runner_env(self) -> dict[str, str]:
        # PCI bus order makes CUDA's device numbers agree with NVML's indices (what the probe reports).
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        if self.settings.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.settings.gpu)
        return env

    @cached_property
    def runners(self) -> Runners:
        """Where runner commands run: warm processes per toolchain, or a fresh one each (settings)."""
        return Runners(self.runner_env(), warm=self.settings.warm_runners, max_jobs=self.settings.runner_max_commands)

    def toolchain(self, kind: str, version: str) -> launcher.Toolchain:
        for tc in self.toolchains:
            if tc.kind == kind and tc.version == version:
                return tc
        have = ", ".join(f"{t.kind}=={t.version}" for t in self.toolchains) or "none"
        raise ToolchainError(f"worker {self.name} has no {kind}=={version} (it has {have})")


def discover(settings: Settings) -> WorkerContext:
    """Probe every toolchain in TRTFARM_TOOLCHAINS (runner --probe in its own interpreter)."""
    found = [launcher.probe(kind, python) for kind, python in settings.toolchain_entries()]
    seen: dict[tuple[str, str], str] = {}
    for tc in found:
        if (tc.kind, tc.version) in seen:
            raise ToolchainError(f"TRTFARM_TOOLCHAINS: {seen[tc.kind, tc.version]} and {tc.interpreter} are both "
                                 f"{tc.kind} {tc.version}; give each version once")
        seen[tc.kind, tc.version] = tc.interpreter
    return WorkerContext(settings=settings, toolchains=found)
