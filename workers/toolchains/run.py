"""Start a toolchain runner inside a foreign interpreter: `INTERPRETER run.py KIND COMMAND ...`.

Standard library only, executed by path (see runner_argv in __init__.py). It takes its own folder off
sys.path (Python put it first), APPENDS the folder above it, so that `toolchains` imports while every
module the interpreter has installed still wins, and runs `toolchains.<KIND>_runner` as __main__ with
the remaining arguments.
"""

import os
import runpy
import signal
import sys

PARENT_ENV = "TRTFARM_RUNNER_PARENT"
PR_SET_PDEATHSIG = 1
HERE = os.path.dirname(os.path.abspath(__file__))
PARENT = os.path.dirname(HERE)


def _prepare_path() -> None:
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
        del sys.path[0]
    if PARENT not in sys.path:
        sys.path.append(PARENT)


def _fail(message: str) -> int:
    """A protocol failure from the bootstrap itself (the runner never started)."""
    from toolchains import common

    argv = sys.argv[2:]
    result = common.RunnerError("invalid_input", message).result()
    common.write_result(None if "--probe" in argv else common.result_path_from(argv), result)
    common.log(f"invalid_input: {message}")
    return common.exit_code(result)


def _die_with_parent() -> None:
    """Linux: SIGKILL this runner when the worker that started it dies (TRTFARM_RUNNER_PARENT holds its pid),
    so a worker killed with -9 leaves no runner holding its GPU. Elsewhere: nothing."""
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the worker died before prctl: nobody would signal us
        os._exit(1)


def main() -> int:
    _die_with_parent()
    _prepare_path()
    import toolchains

    if os.path.realpath(os.path.dirname(toolchains.__file__)) != os.path.realpath(HERE):
        sys.stderr.write(f"[trtfarm-runner] `toolchains` resolves to {toolchains.__file__}, not {HERE}: "
                         "an installed module of that name shadows the runners\n")
        return 1
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in toolchains.KINDS:
        return _fail(f"run.py: unknown runner kind {kind!r}; known: {', '.join(toolchains.KINDS)}")
    del sys.argv[1]
    runpy.run_module(f"toolchains.{kind}_runner", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
