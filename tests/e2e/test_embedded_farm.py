"""The embedded farm driven as a user drives it: the README's main command, then a CLI + SDK session
against `trtfarm up` running in its own process. Real subprocesses, real ONNX Runtime builds."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.embedded import EmbeddedFarm, cli, processes_with_env, user_env
from tests.models import convnet, unbuildable_model
from tests.net import free_port

pytest.importorskip("onnxruntime")

SHAPE = "input:1x3x16x16,4x3x16x16,8x3x16x16"
PROFILE = {"input": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}}


def _json(done) -> object:  # noqa: ANN001
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout)


# ------------------------------------------------------------------------- the README's main command


def test_readme_main_command_builds_fetches_and_runs_a_model(tmp_path):
    """`trtfarm up --demo --exit-after-demo`: starts the farm, builds a real convnet with ONNX Runtime,
    fetches it through the SDK, runs it, says what it did, stops everything and exits 0."""
    home = tmp_path / "farm"
    port = free_port()
    done = subprocess_run([sys.executable, "-m", "registry.cli", "up", "--home", str(home), "--port", str(port),
                           "--demo", "--exit-after-demo"], env=user_env(tmp_path), cwd=tmp_path, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    assert "demo: OK" in out
    assert f"http://127.0.0.1:{port}" in out
    for said in ("demo: workers up:", "demo: made a convnet", "succeeded", "through the SDK (sha256 verified)",
                 "max abs error vs the original model", "validation passed=True"):
        assert said in out, (said, out)
    # the console follows the build: the dispatcher's and the worker's structured lines
    console = done.stderr
    for event in ("event=queued queue=build.onnxruntime-", "[cpu] ", "event=claimed worker=",
                  "event=stage stage=validating previous=building seconds=", "event=finished status=succeeded"):
        assert event in console, (event, console)
    # the engine it reports is in the SDK cache the demo used, named by its digest and the engine's suffix
    cached = [p for p in (home / "client-cache" / "engines" / "sha256").rglob("*") if p.is_file()]
    assert len(cached) == 1 and cached[0].suffix == ".ort"
    assert hashlib.sha256(cached[0].read_bytes()).hexdigest() == cached[0].stem
    # and nothing keeps running: the farm stopped its workers on the way out
    deadline = time.monotonic() + 20
    while processes_with_env("TRTFARM_HOME", str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with_env("TRTFARM_HOME", str(home)) == []


def subprocess_run(args, **kwargs):  # noqa: ANN001, ANN201
    import subprocess

    return subprocess.run(args, capture_output=True, text=True, **kwargs)


# ------------------------------------------------------------------------ a user session, CLI + SDK


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    running = EmbeddedFarm(tmp_path_factory.mktemp("e2e-farm")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def user(farm, tmp_path_factory):
    """The user's shell: a working folder with a model, TRTFARM_URL pointing at the farm."""
    workdir = tmp_path_factory.mktemp("e2e-user")
    model = convnet(workdir / "convnet.onnx", size=16)
    return {"cwd": workdir, "model": model, "env": user_env(workdir, farm.url)}


@pytest.fixture(scope="module")
def submitted(user):
    """`trtfarm submit MODEL --target onnxruntime --shape ... --wait --json`."""
    return _json(cli("submit", str(user["model"]), "--target", "onnxruntime", "--shape", SHAPE, "--wait", "--json",
                     env=user["env"], cwd=user["cwd"], timeout=180))


def test_submit_wait_json_succeeds(submitted, user):
    build = submitted
    assert build["status"] == "succeeded", build
    assert build["toolchain"] == "onnxruntime"
    assert build["target"].startswith("onnxruntime==") and ("@x86_64-" in build["target"]
                                                            or "@aarch64-" in build["target"])
    assert build["model"] == "sha256:" + hashlib.sha256(user["model"].read_bytes()).hexdigest()
    assert build["spec"]["profiles"] == [PROFILE]
    assert build["engine_id"] and build["attempt"] == 1 and build["worker"]
    assert build["error"] is None and build["finished_at"]


def test_same_submit_again_returns_the_same_build(submitted, user):
    again = _json(cli("submit", str(user["model"]), "--target", "onnxruntime", "--shape", SHAPE, "--json",
                      env=user["env"], cwd=user["cwd"]))
    assert again["id"] == submitted["id"]
    assert again["key"] == submitted["key"]
    assert again["status"] == "succeeded"  # dedup by key: nothing is built twice
    # the same request spelled out as a full target and a JSON spec is the same key, too
    spec = json.dumps({"profiles": [PROFILE]})
    full = _json(cli("submit", submitted["model"], "--target", submitted["target"], "--spec", spec, "--json",
                     env=user["env"], cwd=user["cwd"]))
    assert full["id"] == submitted["id"]


def test_builds_json_lists_the_build(submitted, user):
    builds = _json(cli("builds", "--json", env=user["env"], cwd=user["cwd"]))
    mine = [b for b in builds if b["id"] == submitted["id"]]
    assert len(mine) == 1 and mine[0]["status"] == "succeeded"
    only = _json(cli("builds", "--status", "succeeded", "--model", submitted["model"], "--json",
                     env=user["env"], cwd=user["cwd"]))
    assert [b["id"] for b in only] == [submitted["id"]]


def test_engines_json_shows_the_validated_engine(submitted, user):
    engines = _json(cli("engines", submitted["model"], "--json", env=user["env"], cwd=user["cwd"]))
    assert len(engines) == 1
    engine = engines[0]
    assert engine["id"] == submitted["engine_id"] and engine["build_id"] == submitted["id"]
    assert engine["toolchain"] == "onnxruntime" and engine["device"] == submitted["device"]
    assert engine["digest"].startswith("sha256:") and engine["size"] > 0
    assert engine["validation_passed"] is True
    assert engine["validation"]["max_abs_error"] < 1e-4
    assert engine["latency_p50_ms"] > 0
    # a model given by path is hashed locally: the same answer
    by_path = _json(cli("engines", str(user["model"]), "--json", env=user["env"], cwd=user["cwd"]))
    assert [e["id"] for e in by_path] == [engine["id"]]


def test_log_shows_the_whole_build(submitted, user):
    done = cli("log", submitted["id"], env=user["env"], cwd=user["cwd"])
    assert done.returncode == 0, done.stderr
    log = done.stdout
    assert f"build {submitted['id']} attempt 1" in log
    for step in ("downloading model", "building", "validating", "benchmarking", "storing engine", "succeeded"):
        assert step in log, step
    assert "validation at input=4x3x16x16: passed=True" in log
    # printed verbatim: no line is wrapped (the runner command lines are long)
    assert any(len(line) > 200 for line in log.splitlines())


def test_fetch_to_a_file_matches_the_engine_digest(submitted, user):
    engine = _json(cli("engines", submitted["model"], "--json", env=user["env"], cwd=user["cwd"]))[0]
    result = _json(cli("fetch", str(user["model"]), "-o", "out.ort", "--json", env=user["env"], cwd=user["cwd"]))
    out = user["cwd"] / "out.ort"
    assert out.is_file()
    assert Path(result["path"]).resolve() == out.resolve()
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == engine["digest"]
    cache = Path(result["cache_path"])
    assert cache.is_file() and cache != out and cache.name == engine["digest"].removeprefix("sha256:") + ".ort"
    assert cache.is_relative_to(Path(user["env"]["TRTFARM_CACHE"]))
    # plain output: just the path, on one line
    plain = cli("fetch", str(user["model"]), "-o", "again.ort", env=user["env"], cwd=user["cwd"])
    assert plain.returncode == 0 and plain.stdout.strip() == "again.ort"
    assert (user["cwd"] / "again.ort").read_bytes() == out.read_bytes()


@pytest.mark.parametrize(("args", "expected"), [
    (["--target", "onnxruntime", "--shape", SHAPE, "--spec", '{"precisions": ["fp16"]}'],
     ["spec.precisions: unknown field", "known fields:", "precision"]),
    (["--target", "onnxruntime", "--spec", '{"onnxruntime": {"graph_optimization_level": "max"}}', "--shape", SHAPE],
     ["spec.onnxruntime.graph_optimization_level", "'disable', 'basic', 'extended', 'layout' or 'all'"]),
    (["--target", "onnxruntime", "--shape", "input:8x3x16x16,4x3x16x16,8x3x16x16"], ["min <= opt <= max"]),
    (["--target", "onnxruntime", "--shape", "image:1x3x16x16"], ["the model has no input 'image'"]),
    (["--target", "onnxruntime", "--shape", SHAPE, "--precision", "fp16"], ["precision", "TensorRT option"]),
    (["--target", "onnxruntime", "--spec", "{not json"], ["--spec is not valid JSON"]),
    (["--target", "openvino", "--shape", SHAPE], ["unknown toolchain 'openvino'"]),
    (["--target", "tensorrt", "--shape", SHAPE], ["unserved_target", "the fleet offers onnxruntime=="]),
])
def test_bad_submit_input_is_a_clear_error(args, expected, user, submitted):
    done = cli("submit", str(user["model"]), *args, env=user["env"], cwd=user["cwd"])
    assert done.returncode != 0
    text = " ".join(done.stderr.split())  # the message may be wrapped on a terminal-width console
    for part in expected:
        assert part in text, (part, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout


def test_not_an_onnx_file_is_a_clear_error(user, farm, submitted):
    bad = user["cwd"] / "notes.onnx"
    bad.write_text("this is not a model\n")
    before = _json(cli("builds", "--json", env=user["env"], cwd=user["cwd"]))
    done = cli("submit", str(bad), "--target", "onnxruntime", env=user["env"], cwd=user["cwd"])
    assert done.returncode != 0
    text = " ".join(done.stderr.split())
    assert "is not an ONNX model" in text and "notes.onnx" in text
    assert "Traceback" not in done.stderr
    missing = cli("submit", "nowhere.onnx", "--target", "onnxruntime", env=user["env"], cwd=user["cwd"])
    assert missing.returncode != 0 and "neither a model id" in " ".join(missing.stderr.split())
    # the farm refuses it too when a client uploads it anyway (not only the SDK's local check)
    response = httpx.post(f"{farm.url}/v1/models", files={"file": ("notes.onnx", bad.read_bytes())})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_model" and response.json()["message"]
    # and nothing was half-written: no model, no build
    assert _json(cli("builds", "--json", env=user["env"], cwd=user["cwd"])) == before
    digest = "sha256:" + hashlib.sha256(bad.read_bytes()).hexdigest()
    assert httpx.head(f"{farm.url}/v1/models/{digest}").status_code == 404


def test_unknown_ids_are_clear_errors(user, submitted):
    done = cli("log", "no-such-build", env=user["env"], cwd=user["cwd"])
    assert done.returncode != 0 and "invalid_request" in done.stderr and "trtfarm builds" in done.stderr
    assert "'no-such-build' is not an id, or a prefix of one, of 8 to 32 hex characters" in done.stderr
    done = cli("log", "0" * 32, env=user["env"], cwd=user["cwd"])
    assert done.returncode != 0 and "build_not_found" in done.stderr and "trtfarm builds" in done.stderr
    done = cli("fetch", "sha256:" + "0" * 64, env=user["env"], cwd=user["cwd"])
    assert done.returncode != 0 and "404" in done.stderr and "Traceback" not in done.stderr
    done = cli("engines", "sha256:" + "0" * 64, env=user["env"], cwd=user["cwd"])
    assert done.returncode == 1 and "model_not_found" in done.stderr and "upload it first" in done.stderr


def test_every_command_takes_an_id_prefix_of_eight_or_more(user, submitted):
    prefix = submitted["id"][:12]  # as the tables show it
    done = cli("log", prefix, env=user["env"], cwd=user["cwd"])
    assert done.returncode == 0 and f"build {submitted['id']} attempt 1" in done.stdout, done.stderr
    engine = submitted["engine_id"]
    done = cli("engines", "pin", engine[:8], env=user["env"], cwd=user["cwd"])
    assert done.returncode == 0 and f"engine {engine} pinned" in done.stdout, done.stderr
    assert cli("engines", "unpin", engine[:10], env=user["env"], cwd=user["cwd"]).returncode == 0
    short = cli("log", submitted["id"][:7], env=user["env"], cwd=user["cwd"])
    assert short.returncode != 0 and "8 to 32 hex characters" in short.stderr
    model_prefix = submitted["model"][7:19]  # as `trtfarm builds` shows it
    listed = _json(cli("engines", model_prefix, "--json", env=user["env"], cwd=user["cwd"]))
    assert listed and {e["model"] for e in listed} == {submitted["model"]}
    done = cli("fetch", "sha256:" + model_prefix, "--runtime", submitted["target"], env=user["env"], cwd=user["cwd"])
    assert done.returncode == 0 and done.stdout.strip().endswith(".ort"), done.stderr


def test_engines_table_shows_profile_precision_and_level(user, submitted):
    done = cli("engines", str(user["model"]), env=user["env"], cwd=user["cwd"], timeout=60)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for column in ("profile (min..max)", "precision", "level", "input:1x3x16x16..8x3x16x16", "fp32", "extended"):
        assert column in text, (column, done.stdout)


def test_no_farm_url_and_unreachable_farm_are_clear_errors(user, tmp_path):
    env = {k: v for k, v in user["env"].items() if k != "TRTFARM_URL"}
    done = cli("builds", env=env, cwd=tmp_path)
    assert done.returncode != 0 and "set TRTFARM_URL" in done.stderr
    done = cli("builds", env={**env, "TRTFARM_URL": f"http://127.0.0.1:{free_port()}"}, cwd=tmp_path)
    assert done.returncode != 0 and "cannot reach the farm" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------- the SDK, offline second fetch


def test_sdk_fetch_is_cached_and_works_with_the_farm_stopped(tmp_path):
    """Farm(url).fetch twice: the second answer comes from the local cache, with the API process gone;
    the fetched engine runs in ONNX Runtime and agrees with the original model."""
    import numpy as np
    import onnxruntime as ort

    from registry.client import Farm
    from registry.errors import Unreachable

    model = convnet(tmp_path / "model.onnx", size=16, seed=3)
    spec = {"profiles": [PROFILE]}
    farm_proc = EmbeddedFarm(tmp_path / "sdk-farm").start()
    try:
        with Farm(farm_proc.url, cache_dir=tmp_path / "cache") as farm:
            build = farm.submit(model, "onnxruntime", spec, wait=True, poll_interval=0.3, timeout=180)
            assert build.status == "succeeded"
            first = farm.fetch(model, spec=spec)
            engine = farm.engine(build.engine_id)
    finally:
        assert farm_proc.stop() is not None
    with pytest.raises(Unreachable):
        Farm(farm_proc.url).builds()  # the API really is gone
    with Farm(farm_proc.url, cache_dir=tmp_path / "cache") as offline:
        second = offline.fetch(model, spec=spec)
        assert offline.cached(model, spec=spec) == first
    assert second == first
    assert "sha256:" + hashlib.sha256(first.read_bytes()).hexdigest() == engine.digest

    assert second.suffix == ".ort"  # the cache keeps the engine's suffix: ONNX Runtime loads it as it is
    engine_session = ort.InferenceSession(str(second), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for batch in (1, 4, 8):  # min, opt and max of the profile
        x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
        ours = engine_session.run(None, {"input": x})[0]
        ref = original.run(None, {"input": x})[0]
        assert ours.shape == (batch, 10)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_submit_wait_json_prints_a_failed_build_and_exits_1_with_progress_lines(user):
    model = unbuildable_model(user["cwd"] / "nope.onnx")
    done = cli("submit", str(model), "--target", "onnxruntime", "--wait", "--json", env=user["env"], cwd=user["cwd"],
               timeout=180)
    assert done.returncode == 1, done.stderr
    build = json.loads(done.stdout)  # the record, though it failed
    assert build["status"] == "failed" and build["error"]["code"] in ("parse_error", "build_error")
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]  # off a terminal: one line a change
    assert lines and all(f"build {build['id']}" in line and line.split("]")[0].strip("[ ").endswith("s")
                         for line in lines), done.stderr
    assert f"failed: {build['error']['code']}" in lines[-1] and len(lines) == len(set(lines))


def test_log_follow_prints_a_running_build_to_its_end(user, submitted):
    spec = json.dumps({"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [3, 3, 16, 16]}}]})
    queued = _json(cli("submit", str(user["model"]), "--target", "onnxruntime", "--spec", spec, "--json",
                       env=user["env"], cwd=user["cwd"]))
    assert queued["status"] in ("queued", "running")
    done = cli("log", "-f", queued["id"], env=user["env"], cwd=user["cwd"], timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"build {queued['id']} attempt 1" in lines[0] and lines[-1].endswith("succeeded")
    whole = cli("log", queued["id"], env=user["env"], cwd=user["cwd"]).stdout.splitlines()
    assert lines == [line for line in whole if line]  # every line once, in order


def test_fetch_to_a_name_without_the_suffix_adds_it(user, submitted):
    import onnxruntime as ort

    done = cli("fetch", str(user["model"]), "-o", "engine", env=user["env"], cwd=user["cwd"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "engine.ort" and not (user["cwd"] / "engine").exists()
    assert "ONNX Runtime loads ORT-format engines by their .ort suffix" in done.stderr
    ort.InferenceSession(str(user["cwd"] / "engine.ort"), providers=["CPUExecutionProvider"])


def test_a_dynamic_input_without_a_range_builds_at_ones_with_a_warning(user, submitted):
    model = convnet(user["cwd"] / "noshape.onnx", channels=4, layers=1, seed=7)
    done = cli("submit", str(model), "--target", "onnxruntime", "--wait", env=user["env"], cwd=user["cwd"], timeout=180)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "succeeded" in text and "warning default_shape: no range for dynamic input(s): input (N, 3, 16, 16)" in text
    assert "validated at 1x3x16x16" in text and "--shape input:MIN,OPT,MAX" in text
