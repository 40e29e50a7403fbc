"""workers/toolchains/common.py (what both runners share) and how runners are started (runner_argv, run.py)."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workers.toolchains import KINDS, RUNNERS_DIR, common, runner_argv

# ---------------------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------------------


def test_latency_summary_is_nearest_rank_on_unordered_samples():
    summary = common.latency_summary([float(v) for v in range(100, 0, -1)])
    assert summary == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "mean": 50.5, "min": 1.0, "max": 100.0,
                       "iterations": 100}


def test_timed_runs_stop_at_the_count_or_the_time_budget_never_below_three() -> None:
    import time

    samples, stopped = common.timed_runs(lambda: 1.0, 7, None)
    assert (samples, stopped) == ([1.0] * 7, "iterations")
    samples, stopped = common.timed_runs(lambda: 1.0, 7, 60.0)
    assert (len(samples), stopped) == (7, "iterations")

    def slow() -> float:
        time.sleep(0.05)
        return 50.0

    samples, stopped = common.timed_runs(slow, 1000, 0.2)  # the budget ends it after about 4 runs
    assert stopped == "time" and 3 <= len(samples) <= 8
    samples, stopped = common.timed_runs(slow, 1000, 0.001)  # a budget spent at once still gives 3 runs
    assert stopped == "time" and len(samples) == 3
    samples, stopped = common.timed_runs(slow, 2, 0.001)  # fewer asked than the floor: the count wins
    assert stopped == "iterations" and len(samples) == 2


@pytest.mark.parametrize(("samples", "p50", "p99"), [
    ([3.0], 3.0, 3.0),
    ([1.0, 2.0], 1.0, 2.0),
    ([1.0, 2.0, 3.0], 2.0, 3.0),
    ([5.0, 1.0, 4.0, 2.0, 3.0], 3.0, 5.0),
    ([1.0] * 99 + [50.0], 1.0, 1.0),  # the 99th of 100 values
    ([1.0] * 98 + [50.0, 60.0], 1.0, 50.0),
])
def test_percentiles(samples, p50, p99):
    summary = common.latency_summary(samples)
    assert (summary["p50"], summary["p99"], summary["iterations"]) == (p50, p99, len(samples))
    assert summary["min"] == min(samples) <= summary["p50"] <= summary["p99"] <= max(samples)


def test_latency_summary_rounds_to_ten_nanoseconds():
    summary = common.latency_summary([0.1234567, 0.2000001, 1 / 3])
    assert summary == {"p50": 0.2, "p90": 0.33333, "p99": 0.33333, "mean": 0.21893, "min": 0.12346, "max": 0.33333,
                       "iterations": 3}


def test_latency_of_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        common.latency_summary([])
    with pytest.raises(ValueError, match="no values"):
        common.percentile([], 50)


def test_percentile_bounds():
    ordered = [1.0, 2.0, 3.0, 4.0]
    assert common.percentile(ordered, 0) == 1.0
    assert common.percentile(ordered, 100) == 4.0
    assert common.percentile(ordered, 25) == 1.0 and common.percentile(ordered, 26) == 2.0


# ---------------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "slug"), [
    ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"),
    ("Tesla T4", "t4"),
    ("NVIDIA Tesla V100-SXM2-16GB", "v100-sxm2-16gb"),
    ("  NVIDIA  GeForce   RTX 4090\n", "geforce-rtx-4090"),
    ("NVIDIA", "nvidia"),  # a prefix needs its space
    ("---", ""),
])
def test_sku_slug(name, slug):
    assert common.sku_slug(name) == slug


def test_cc_slug():
    assert (common.cc_slug(9, 0), common.cc_slug(8, 6), common.cc_slug(10, 0), common.cc_slug(12, 1)) == (
        "sm_90", "sm_86", "sm_100", "sm_121")


@pytest.mark.parametrize(("machine", "flags", "device"), [
    ("x86_64", {"avx512f", "avx512bw", "avx512vl", "avx2", "avx"}, "x86_64-avx512"),
    ("x86_64", {"avx512f", "avx512bw", "avx2"}, "x86_64-avx2"),  # no avx512vl
    ("x86_64", {"avx2", "avx"}, "x86_64-avx2"),
    ("x86_64", {"avx", "sse4_2"}, "x86_64-avx"),
    ("x86_64", set(), "x86_64-sse"),
    ("AMD64", {"avx2"}, "x86_64-avx2"),
    ("x64", set(), "x86_64-sse"),
    ("aarch64", {"asimd", "sve"}, "aarch64-sve"),
    ("ARM64", {"asimd"}, "aarch64-neon"),
    ("ppc64le", {"altivec"}, "ppc64le-generic"),
])
def test_cpu_arch_and_isa(machine, flags, device):
    arch = common.cpu_arch(machine)
    assert f"{arch}-{common.cpu_isa(arch, flags)}" == device


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve
CPU implementer\t: 0x41
"""


def test_cpu_device_from_cpuinfo():
    x86 = common.cpu_device(X86_CPUINFO, "x86_64")
    assert {k: x86[k] for k in ("name", "device", "arch", "isa")} == {
        "name": "Intel(R) Xeon(R) Platinum 8480+", "device": "x86_64-avx512", "arch": "x86_64", "isa": "avx512"}
    assert x86["cores"] == os.cpu_count()
    arm = common.cpu_device(ARM_CPUINFO, "aarch64")
    assert (arm["device"], arm["isa"]) == ("aarch64-sve", "sve")
    assert arm["name"]  # no model name line: platform's answer, never empty
    assert common.cpu_device("", "x86_64")["device"] == "x86_64-sse"


def test_cpu_flags_come_from_the_first_flags_line():
    assert common.cpu_flags("flags : a b\nflags : c\n") == {"a", "b"}
    assert common.cpu_flags("model name : x\n") == set()


# ---------------------------------------------------------------------------------------------------------
# Files and inputs
# ---------------------------------------------------------------------------------------------------------
def test_atomic_write_bytes_and_writer(tmp_path):
    target = tmp_path / "out.bin"
    common.atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    common.atomic_write(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def explode(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        common.atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_read_bytes_and_json_errors(tmp_path):
    with pytest.raises(common.RunnerError) as err:
        common.read_bytes(tmp_path / "absent", "engine")
    assert err.value.code == "invalid_input"
    assert err.value.message == f"cannot read engine {tmp_path / 'absent'}: No such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(common.RunnerError) as err:
        common.read_json_object(bad, "spec")
    assert err.value.code == "invalid_input" and err.value.message.startswith(f"spec {bad} is not valid JSON: ")
    bad.write_text("[1, 2]")
    with pytest.raises(common.RunnerError) as err:
        common.read_json_object(bad, "spec")
    assert err.value.message == f"spec {bad} must be a JSON object"


def test_load_spec_names_every_missing_field(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"tf32": True, "onnxruntime": {"graph_optimization_level": "all"}}))
    assert common.load_spec(path, ["tf32", "onnxruntime.graph_optimization_level"])["tf32"] is True
    with pytest.raises(common.RunnerError) as err:
        common.load_spec(path, ["tf32", "precision"])
    assert (err.value.code, err.value.message) == ("invalid_input",
                                                   "spec.json is not a canonical spec: missing field precision")
    with pytest.raises(common.RunnerError) as err:
        common.load_spec(path, ["precision", "onnxruntime.optimized_model_format", "tf32.x"])
    assert err.value.message == ("spec.json is not a canonical spec: missing fields precision, "
                                 "onnxruntime.optimized_model_format, tf32.x")


def test_a_canonical_spec_has_every_field_the_runners_read():
    from registry.keys import spec_canonical
    from registry.spec import parse_spec
    from workers.toolchains.onnxruntime_runner import options as ort_options
    from workers.toolchains.tensorrt_runner import options as trt_options

    spec = json.loads(json.dumps(spec_canonical(parse_spec({}))))
    for fields in (trt_options.SPEC_FIELDS, ort_options.SPEC_FIELDS):
        assert all(common._has_field(spec, name) for name in fields), fields


# ---------------------------------------------------------------------------------------------------------
# Command line, result, exit codes
# ---------------------------------------------------------------------------------------------------------
def make_parser() -> common.Parser:
    parser = common.Parser(prog="x_runner")
    parser.add_argument("--probe", action="store_true")
    commands = parser.add_subparsers(dest="command")
    build = commands.add_parser("build")
    build.add_argument("--model", required=True)
    build.add_argument("--count", type=int, default=1)
    build.add_argument("--result", required=True)
    run = commands.add_parser("run")
    run.add_argument("--result", required=True)
    return parser


@pytest.mark.parametrize(("argv", "message"), [
    (["build", "--result", "r"], "x_runner build: the following arguments are required: --model"),
    (["build", "--model", "m", "--count", "many", "--result", "r"],
     "x_runner build: argument --count: invalid int value: 'many'"),
    (["fly"], "x_runner: argument command: invalid choice: 'fly' (choose from build, run)"),
    (["--bogus"], "x_runner: unrecognized arguments: --bogus"),
])
def test_parser_errors_are_invalid_input(argv, message):
    with pytest.raises(common.RunnerError) as err:
        make_parser().parse_args(argv)
    assert err.value.code == "invalid_input"
    assert err.value.message.replace("'build', 'run'", "build, run") == message


@pytest.mark.parametrize(("argv", "path"), [
    (["build", "--result", "r.json"], "r.json"),
    (["build", "--result=r.json", "--model", "m"], "r.json"),
    (["build", "--result"], None),
    (["build"], None),
])
def test_result_path_is_read_off_the_raw_arguments(argv, path):
    assert common.result_path_from(argv) == path


@pytest.mark.parametrize(("result", "code"), [
    ({"kind": "tensorrt", "version": "8.6.0"}, 0),  # the probe object
    ({"ok": True, "metadata": {}}, 0),
    (common.RunnerError("unsupported_option", "m").result(), 2),
    (common.RunnerError("invalid_input", "m").result(), 2),
    (common.RunnerError("parse_error", "m").result(), 1),
    (common.RunnerError("build_error", "m").result(), 1),
    (common.RunnerError("run_error", "m").result(), 1),
])
def test_exit_codes(result, code):
    assert common.exit_code(result) == code


def test_runner_error_result():
    assert common.RunnerError("build_error", "it broke", hint="try again").result() == {
        "ok": False, "error": {"code": "build_error", "message": "it broke", "hint": "try again"}}


def commands_raising(exc: Exception) -> dict:
    def fail(args):
        raise exc

    return {"probe": lambda args: {"kind": "x"}, "build": fail, "run": fail}


@pytest.mark.parametrize(("argv", "code"), [
    (["build", "--model", "m", "--result", "r"], "build_error"),
    (["run", "--result", "r"], "run_error"),
])
def test_dispatch_turns_unexpected_exceptions_into_results(argv, code, capsys):
    command, result = common.dispatch(make_parser(), commands_raising(KeyError("boom")), argv)
    assert command == argv[0]
    assert result == {"ok": False, "error": {"code": code, "message": "KeyError: 'boom'", "hint": None}}
    assert "Traceback" in capsys.readouterr().err


def test_dispatch_results():
    parser, commands = make_parser(), commands_raising(common.RunnerError("parse_error", "bad", "fix it"))
    assert common.dispatch(parser, commands, ["--probe"]) == ("probe", {"kind": "x"})
    assert common.dispatch(parser, commands, ["run", "--result", "r"]) == (
        "run", {"ok": False, "error": {"code": "parse_error", "message": "bad", "hint": "fix it"}})
    assert common.dispatch(parser, {"build": lambda args: {"size": 3}}, ["build", "--model", "m", "--result", "r"]) \
        == ("build", {"ok": True, "size": 3})
    command, result = common.dispatch(parser, commands, [])
    assert command is None
    assert result["error"] == {"code": "invalid_input", "hint": None,
                               "message": "give --probe or a command: build, run (see --help)"}


def test_main_writes_the_result_file_and_logs_failures(tmp_path, capsys):
    result_path = tmp_path / "deep" / "r.json"
    commands = {"build": lambda args: {"metadata": {"n": args.count}}}
    argv = ["build", "--model", "m", "--count", "7", "--result", str(result_path)]
    assert common.main("x-runner", make_parser, commands, argv) == 0
    assert json.loads(result_path.read_text()) == {"ok": True, "metadata": {"n": 7}}

    def no_fp8(args):
        raise common.RunnerError("unsupported_option", "no fp8")

    commands = {"build": no_fp8}
    assert common.main("x-runner", make_parser, commands, argv) == 2
    assert json.loads(result_path.read_text())["error"]["message"] == "no fp8"
    out, err = capsys.readouterr()
    assert out == "" and err == "[x-runner] unsupported_option: no fp8\n"


def test_main_prints_the_probe_and_command_line_errors_without_a_result(capsys):
    assert common.main("x-runner", make_parser, {"probe": lambda args: {"kind": "x"}}, ["--probe"]) == 0
    assert json.loads(capsys.readouterr().out) == {"kind": "x"}
    assert common.main("x-runner", make_parser, {}, ["build"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["message"] == "x_runner build: the following arguments are required: " \
                                                  "--model, --result"
    assert err.startswith("[x-runner] invalid_input: ")


# ---------------------------------------------------------------------------------------------------------
# Starting runners: runner_argv, run.py, what the runners may import
# ---------------------------------------------------------------------------------------------------------
def test_runner_argv_runs_the_bootstrap_by_path():
    for kind in KINDS:
        assert runner_argv(kind, "/opt/py/bin/python") == ["/opt/py/bin/python", str(RUNNERS_DIR / "run.py"), kind]
        assert (RUNNERS_DIR / f"{kind}_runner" / "__main__.py").is_file()


def run_bootstrap(interpreter: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*runner_argv(args[0], interpreter), *args[1:]], capture_output=True, text=True,
                          timeout=120, cwd="/", env=env if env is not None else {"PATH": os.defpath}, check=False)


def test_unknown_kind_is_a_protocol_error(tmp_path):
    done = run_bootstrap(sys.executable, "cobol", "--probe")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["message"] == ("run.py: unknown runner kind 'cobol'; "
                                                           "known: tensorrt, onnxruntime")
    result = tmp_path / "r.json"
    done = run_bootstrap(sys.executable, "cobol", "build", "--result", str(result))
    assert done.returncode == 2 and json.loads(result.read_text())["error"]["code"] == "invalid_input"


def test_tensorrt_runner_without_tensorrt_fails_cleanly():
    done = run_bootstrap(sys.executable, "tensorrt", "--probe")
    if done.returncode == 0:
        pytest.skip("this interpreter has tensorrt")
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "invalid_input" and "tensorrt is not importable" in error["message"]
    assert "[trtfarm-runner] invalid_input: tensorrt is not importable" in done.stderr


def test_onnxruntime_runner_imports_nothing_of_the_project():
    """The probe runs with registry, workers and pydantic made unimportable (as in a foreign interpreter)."""
    pytest.importorskip("onnxruntime")
    blocker = ("import runpy, sys\n"
               "for name in ('registry', 'workers', 'pydantic', 'api'): sys.modules[name] = None\n"
               f"sys.argv = [{str(RUNNERS_DIR / 'run.py')!r}, 'onnxruntime', '--probe']\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120, cwd="/",
                          check=False)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["kind"] == "onnxruntime" and probe["devices"][0]["device"]


def bare_python310() -> str | None:
    found = sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3")) + [shutil.which("python3.10") or ""]
    return next((p for p in found if p and os.access(p, os.X_OK)), None)


def test_the_runners_start_in_a_bare_python_310():
    """TensorRT 8.5/8.6 wheels are cp310: every module must import there, with nothing but the stdlib."""
    python = bare_python310()
    if python is None:
        pytest.skip("no Python 3.10 here")
    done = run_bootstrap(python, "tensorrt", "--probe", env={})
    assert done.returncode == 2, done.stderr
    assert "tensorrt is not importable" in json.loads(done.stdout)["error"]["message"]
    sources = [str(p) for p in RUNNERS_DIR.rglob("*.py")]
    compiled = subprocess.run([python, "-c", "import ast, sys\nfor p in sys.argv[1:]: ast.parse(open(p).read(), p)",
                               *sources], capture_output=True, text=True, timeout=120, check=False)
    assert compiled.returncode == 0, compiled.stderr


RUNTIMES = {"numpy", "tensorrt", "onnxruntime", "onnx"}  # onnx: optional, only where a toolchain has it


@pytest.mark.parametrize("path", sorted(RUNNERS_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(RUNNERS_DIR)))
def test_runner_modules_import_only_stdlib_runtimes_and_siblings(path: Path):
    tree = ast.parse(path.read_text())
    absolute = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    absolute |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    allowed = set(sys.stdlib_module_names) | RUNTIMES | ({"toolchains"} if path.name == "run.py" else set())
    assert absolute <= allowed, absolute - allowed
    top_level = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top_level |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not top_level & RUNTIMES  # imported lazily, inside functions: --help and --probe errors work anywhere
