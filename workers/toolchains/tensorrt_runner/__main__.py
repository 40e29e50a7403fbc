"""The TensorRT runner's command line: `python workers/toolchains/run.py tensorrt COMMAND ...` (see
workers/toolchains/__init__.py), or `python -m toolchains.tensorrt_runner` with workers/ on the path."""

from __future__ import annotations

import sys

from .. import common
from .build import cmd_build
from .merge import cmd_merge
from .probe import cmd_probe
from .session import cmd_bench, cmd_run

PROG = "tensorrt_runner.py"
DESCRIPTION = "TensorRT toolchain runner: build, run, bench and merge timing caches inside a TensorRT interpreter."
COMMANDS = {"probe": cmd_probe, "build": cmd_build, "run": cmd_run, "bench": cmd_bench, "merge": cmd_merge}


def build_parser() -> common.Parser:
    parser = common.Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--probe", action="store_true", help="print kind, version, features and GPUs as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = commands.add_parser("build", help="build a plan from an ONNX model and a spec")
    build.add_argument("--model", required=True, help="the .onnx file (external data beside it)")
    build.add_argument("--spec", required=True, help="canonical spec JSON")
    build.add_argument("--out", required=True, help="where to write the plan")
    build.add_argument("--timing-cache-in", help="timing cache to start from (a rejected one is a miss)")
    build.add_argument("--timing-cache-out", help="where to write the timing cache after the build")
    build.add_argument("--plugin", action="append", default=[], help="plugin library to load (repeatable)")
    build.add_argument("--calibration-cache", help="INT8 calibration cache to serve (with precision int8)")
    build.add_argument("--calibration-data", help="INT8 calibration data set (.npz, one array per input) to "
                                                  "calibrate with (with precision int8)")
    build.add_argument("--calibration-cache-out", help="where to write the cache a calibration made")
    build.add_argument("--verbose", action="store_true", help="also log TensorRT's VERBOSE messages")
    for name in ("run", "bench"):
        sub = commands.add_parser(name, help="run the engine once" if name == "run" else "time the engine")
        sub.add_argument("--engine", required=True)
        sub.add_argument("--inputs", required=True, help=".npz with one array per input name")
        if name == "run":
            sub.add_argument("--outputs", required=True, help=".npz to write, one array per output name")
        else:
            common.add_bench_arguments(sub)
        sub.add_argument("--profile", type=int, default=0, help="optimization profile index")
        sub.add_argument("--plugin", action="append", default=[], help="plugin library the engine needs (repeatable)")
        sub.add_argument("--verbose", action="store_true")
    merge = commands.add_parser("merge", help="combine timing caches")
    merge.add_argument("--cache", action="append", required=True, help="input cache (repeatable)")
    merge.add_argument("--out", required=True)
    for sub in (build, commands.choices["run"], commands.choices["bench"], merge):
        sub.add_argument("--result", required=True, help="where to write the JSON result")
    return parser


def main(argv: list[str] | None = None) -> int:
    return common.main("trtfarm-runner", build_parser, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
