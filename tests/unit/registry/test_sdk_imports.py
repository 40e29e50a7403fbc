"""The base install (httpx, pydantic, typer, rich) is enough for the SDK and the client CLI; the server
commands, registered from the server code, then say what to install.

A subprocess installs a sys.meta_path finder that refuses every heavy or server-side package, then
imports the SDK modules and uses them a little: nothing may need the refused packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BLOCKED = ("tensorrt", "tensorrt_lean", "onnxruntime", "onnx", "boto3", "botocore", "pynvml", "sqlalchemy",
           "fastapi", "starlette", "uvicorn", "celery", "kombu", "numpy", "alembic", "psycopg", "redis",
           "pydantic_settings", "prometheus_client")

SDK_MODULES = ["registry.client", "registry.runtime", "registry.cli"]

SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys, tempfile
    from pathlib import Path

    BLOCKED = set(json.loads(sys.argv[1]))
    MODULES = json.loads(sys.argv[2])

    class Blocker:
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked for this test: {fullname}", name=fullname)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in MODULES:
        importlib.import_module(name)

    from registry.client import Farm
    from registry.errors import InvalidInput
    from registry.runtime import detect_runtime, parse_runtime

    # runtime strings parse; detection says clearly that nothing is importable
    assert str(parse_runtime("tensorrt==8.6.0@h100-80gb-hbm3/sm_90")) == "tensorrt==8.6.0@h100-80gb-hbm3/sm_90"
    try:
        detect_runtime()
    except InvalidInput as exc:
        assert "no tensorrt or onnxruntime importable here" in str(exc), exc
    else:
        raise AssertionError("detect_runtime() found a runtime although every toolchain is blocked")

    # without onnx a model is treated as a single file
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp, "m.onnx")
        model.write_bytes(b"bytes")
        farm = Farm("http://localhost:1", cache_dir=tmp)
        assert farm.model_id(model).startswith("sha256:")
        farm.close()

    if "registry.cli" in MODULES:  # server commands are listed and say what to install
        from typer.testing import CliRunner

        from registry import cli

        cli.add_server_commands(cli.app)
        for command in ("up", "api", "worker", "dispatcher", "db", "keys"):
            done = CliRunner().invoke(cli.app, [command, "--port", "1"])
            assert done.exit_code == 2, (command, done.exit_code, done.output)
            assert "needs the server packages" in done.output and "trtfarm[all]" in done.output, done.output

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("ok")
    """
)


def test_sdk_imports_without_heavy_packages(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TRTFARM_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BLOCKED), json.dumps(SDK_MODULES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().endswith("ok")
