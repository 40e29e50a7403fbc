"""Helpers for the deployment checks: the files under infra/, `docker-compose config`, env-file parsing."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CHART = INFRA / "helm" / "trtfarm"
# read by the SDK and the CLI (registry/client.py, registry/cli.py), not by the server's Settings
CLIENT_ONLY = {"TRTFARM_URL", "TRTFARM_TOKEN"}
TRTFARM_NAME = re.compile(r"\bTRTFARM_[A-Z0-9_]+\b")
# the services of compose.yaml that run trtfarm (and so get farm.env)
FARM_SERVICES = ("migrate", "api", "dispatcher", "worker-cpu", "worker-trt86", "worker-trt10")


def setting_names() -> set[str]:
    from registry.settings import Settings

    return {f"TRTFARM_{name.upper()}" for name in Settings.model_fields}


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        raise AssertionError("docker-compose is not installed: scripts/setup installs Debian's package when run as "
                             "root; otherwise `sudo apt-get install docker-compose` (this check never skips)")
    return found


@functools.lru_cache(maxsize=1)
def compose_config() -> dict[str, Any]:
    """`docker-compose config` of infra/compose.yaml with infra/.env.example: the resolved file, as a dict."""
    done = subprocess.run([docker_compose(), "--env-file", str(INFRA / ".env.example"), "-f",
                           str(INFRA / "compose.yaml"), "--profile", "gpu", "config"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


def service_env(config: dict[str, Any], service: str) -> dict[str, str]:
    env = config["services"][service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}
