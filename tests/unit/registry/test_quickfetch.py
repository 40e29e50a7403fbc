"""registry.quickfetch: `trtfarm fetch` asked again is answered from the local cache without importing the SDK
(httpx, its schemas), and only while the model files, the runtime and the cached engine are as they were."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry import quickfetch
from registry.digests import digest_of_file
from registry.localfiles import mark_verified

REPO = Path(__file__).resolve().parents[3]
RUNTIME = "onnxruntime==1.32.0@x86_64-avx2"


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRTFARM_CACHE", str(cache))
    monkeypatch.setenv("TRTFARM_URL", "http://127.0.0.1:9")  # nothing listens: a hit must not need it
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a model")
    past = time.time() - 3600
    os.utime(model, (past, past))
    digest, size = digest_of_file(model)  # any bytes do for an engine here
    engine = cache / "engines" / "sha256" / digest[7:9] / f"{digest[7:]}.ort"
    engine.parent.mkdir(parents=True)
    engine.write_bytes(model.read_bytes())
    mark_verified(engine, cache / "verified" / engine.name)
    quickfetch.remember(str(model), RUNTIME, None, engine, digest, size, [model])
    return model, engine, digest


def test_a_repeat_is_answered_while_nothing_changed(cached) -> None:  # noqa: ANN001
    model, engine, _ = cached
    assert quickfetch.answer(str(model), RUNTIME, None) == engine
    assert quickfetch.answer(str(model), "auto", None) is None  # detection could give another runtime
    assert quickfetch.answer(str(model), RUNTIME, '{"precision": ["fp16"]}') is None  # another question
    model.write_bytes(b"a retrained model")
    assert quickfetch.answer(str(model), RUNTIME, None) is None


def test_a_corrupt_cached_engine_is_no_answer(cached) -> None:  # noqa: ANN001
    model, engine, _ = cached
    os.chmod(engine, 0o644)
    engine.write_bytes(b"a mOdel")  # same size, another stat: re-hashed, refused, removed
    assert quickfetch.answer(str(model), RUNTIME, None) is None and not engine.exists()


def test_the_command_answers_without_importing_the_sdk(cached) -> None:  # noqa: ANN001
    model, engine, _ = cached
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "registry.cli", "fetch", str(model),
                           "--runtime", RUNTIME], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(engine)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert not {"httpx", "registry.client", "registry.spec", "registry.schemas"} & imported  # (typer loads pydantic)
