"""Warm runners (workers/warm.py) with the real ONNX Runtime runner: many commands in one process, each
command's log in its own build log, and a fresh process after a crash, a timeout, a cancel, a plugin
build or `max_jobs` commands."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from registry.errors import BuildCancelled, RunnerFailed
from registry.keys import spec_canonical
from registry.spec import parse_spec
from tests.models import convnet
from workers.launcher import BuildLog, Toolchain, probe
from workers.warm import Runners, WarmRunner


@pytest.fixture(scope="module")
def ort() -> Toolchain:
    return probe("onnxruntime", sys.executable)


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Path]:
    model = convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=5)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_canonical(parse_spec({}))))
    inputs = tmp_path / "in.npz"
    np.savez(inputs, input=np.ones((1, 3, 16, 16), np.float32))
    return {"model": model, "spec": spec, "inputs": inputs}


def build(runner: WarmRunner, made: dict[str, Path], tmp: Path, log: BuildLog, name: str = "e") -> dict:
    return runner.run("build", ["--model", str(made["model"]), "--spec", str(made["spec"]),
                                "--out", str(tmp / f"{name}.ort")], workdir=tmp, log=log, timeout=60)


def slow_bench(engine: Path, made: dict[str, Path]) -> list[str]:
    return ["--engine", str(engine), "--inputs", str(made["inputs"]), "--iterations", str(10**8)]


def test_one_process_serves_build_run_and_bench_each_log_to_its_build(ort: Toolchain, made: dict,
                                                                      tmp_path: Path) -> None:
    runner = WarmRunner(ort, {}, max_jobs=100)
    try:
        first, second = BuildLog(tmp_path / "first.log"), BuildLog(tmp_path / "second.log")
        meta = build(runner, made, tmp_path, first, "a")["metadata"]
        pid = runner.pid
        assert meta["version"] and (tmp_path / "a.ort").stat().st_size > 0
        build(runner, made, tmp_path, second, "b")
        runner.run("run", ["--engine", str(tmp_path / "b.ort"), "--inputs", str(made["inputs"]),
                           "--outputs", str(tmp_path / "out.npz")], workdir=tmp_path, log=second, timeout=60)
        bench = runner.run("bench", ["--engine", str(tmp_path / "b.ort"), "--inputs", str(made["inputs"]),
                                     "--iterations", "5"], workdir=tmp_path, log=second, timeout=60)
        assert runner.pid == pid and runner.jobs == 4  # one process for all four commands
        assert bench["latency_ms"]["iterations"] == 5
        with np.load(tmp_path / "out.npz") as out:
            assert len(out.files) == 1
        first_text, second_text = first.path.read_text(), second.path.read_text()
        assert "saved a.ort" in first_text and "saved b.ort" not in first_text
        assert "saved b.ort" in second_text and "saved a.ort" not in second_text
        assert "@@trtfarm-runner-done" not in first_text + second_text  # the protocol's marks stay out of logs
    finally:
        runner.stop()


def test_a_failed_command_reports_its_error_and_the_process_serves_on(ort: Toolchain, made: dict,
                                                                      tmp_path: Path) -> None:
    runner = WarmRunner(ort, {}, max_jobs=100)
    log = BuildLog(tmp_path / "b.log")
    try:
        build(runner, made, tmp_path, log)
        pid = runner.pid
        with pytest.raises(RunnerFailed) as failed:
            runner.run("build", ["--model", str(tmp_path / "missing.onnx"), "--spec", str(made["spec"]),
                                 "--out", str(tmp_path / "x.ort")], workdir=tmp_path, log=log, timeout=60)
        assert failed.value.runner_code == "invalid_input" and "missing.onnx" in str(failed.value)
        assert build(runner, made, tmp_path, log, "after")["ok"] and runner.pid == pid
    finally:
        runner.stop()


def test_a_runner_killed_mid_command_is_a_crash_and_the_next_command_gets_a_new_process(
        ort: Toolchain, made: dict, tmp_path: Path) -> None:
    runner = WarmRunner(ort, {}, max_jobs=100)
    log = BuildLog(tmp_path / "b.log")
    try:
        build(runner, made, tmp_path, log)
        victim = runner.pid
        threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
        with pytest.raises(RunnerFailed) as crashed:
            runner.run("bench", slow_bench(tmp_path / "e.ort", made), workdir=tmp_path, log=log, timeout=60)
        assert crashed.value.runner_code == "runner_crashed" and "exited -9 without a result" in str(crashed.value)
        assert build(runner, made, tmp_path, log, "again")["ok"]
        assert runner.pid not in (None, victim)
    finally:
        runner.stop()


def test_timeout_and_cancel_kill_the_process(ort: Toolchain, made: dict, tmp_path: Path) -> None:
    runner = WarmRunner(ort, {}, max_jobs=100)
    log = BuildLog(tmp_path / "b.log")
    try:
        build(runner, made, tmp_path, log)
        first = runner.pid
        started = time.monotonic()
        with pytest.raises(RunnerFailed) as timed_out:
            runner.run("bench", slow_bench(tmp_path / "e.ort", made), workdir=tmp_path, log=log, timeout=1.5)
        assert timed_out.value.runner_code == "timeout" and time.monotonic() - started < 10
        assert runner.pid is None and not Path(f"/proc/{first}").exists()  # killed and reaped
        build(runner, made, tmp_path, log)
        second = runner.pid
        stop_at = time.monotonic() + 1.0
        with pytest.raises(BuildCancelled):
            runner.run("bench", slow_bench(tmp_path / "e.ort", made), workdir=tmp_path, log=log, timeout=60,
                       should_stop=lambda: time.monotonic() > stop_at)
        assert runner.pid is None and second != first
    finally:
        runner.stop()


def test_max_jobs_replaces_the_process(ort: Toolchain, made: dict, tmp_path: Path) -> None:
    runner = WarmRunner(ort, {}, max_jobs=2)
    log = BuildLog(tmp_path / "b.log")
    try:
        pids = []
        for k in range(5):
            build(runner, made, tmp_path, log, f"e{k}")
            pids.append(runner.pid)
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    finally:
        runner.stop()


def test_runners_keep_plugin_builds_and_the_cold_setting_out_of_warm_processes(ort: Toolchain, made: dict,
                                                                                tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "b.log")
    args = ["--model", str(made["model"]), "--spec", str(made["spec"]), "--out", str(tmp_path / "p.ort")]
    warm = Runners({}, warm=True)
    try:
        warm.run(ort, "build", args, workdir=tmp_path, log=log, timeout=60)
        with pytest.raises(RunnerFailed, match="onnxruntime builds take none"):
            warm.run(ort, "build", [*args, "--plugin", "libnothing.so"], workdir=tmp_path, log=log, timeout=60)
        cold = Runners({}, warm=False)
        cold.run(ort, "build", args, workdir=tmp_path, log=log, timeout=60)
    finally:
        warm.close()
    commands = [line for line in log.path.read_text().splitlines() if line.startswith("$ ")]
    assert len(commands) == 3
    assert "warm onnxruntime runner" in commands[0]
    assert "warm" not in commands[1] and "--plugin" in commands[1]  # a fresh process: run.py on its command line
    assert "warm" not in commands[2] and "run.py onnxruntime build" in commands[2]


def test_a_command_whose_warm_runner_died_runs_again_in_a_fresh_process(ort: Toolchain, made: dict,
                                                                        tmp_path: Path) -> None:
    runners, log = Runners({}, warm=True), BuildLog(tmp_path / "b.log")
    engine = tmp_path / "e.ort"
    try:
        runners.run(ort, "build", ["--model", str(made["model"]), "--spec", str(made["spec"]), "--out", str(engine)],
                    workdir=tmp_path, log=log, timeout=60)
        probe_args = ["--engine", str(engine), "--inputs", str(made["inputs"]), "--iterations", "200"]
        mean_ms = runners.run(ort, "bench", probe_args, workdir=tmp_path, log=log, timeout=60)["latency_ms"]["mean"]
        iterations = max(1000, int(3000 / max(mean_ms, 1e-3)))  # about 3 s of benchmark
        victim = runners._warm[(ort.kind, ort.interpreter)].pid
        threading.Timer(0.7, os.kill, (victim, signal.SIGKILL)).start()
        bench = runners.run(ort, "bench", [*probe_args[:-1], str(iterations)], workdir=tmp_path, log=log, timeout=120)
    finally:
        runners.close()
    assert bench["latency_ms"]["iterations"] == iterations  # the second, fresh process finished it
    text = log.path.read_text()
    assert "the warm onnxruntime runner died during bench; running it again in a fresh process" in text
    assert "run.py onnxruntime bench" in text
