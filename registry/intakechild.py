"""The parser's side of model intake (registry.intake), run as `python -m registry.intakechild`:

- `serve FD`: the fork server. It imports onnx once, then reads requests from the socket FD (one JSON
  packet each) and forks one child per request, answering with the child's pid and a pidfd (SCM_RIGHTS):
  the API waits on the pidfd and kills the child by it at its deadline. The server never reads a model
  itself (each child starts from a process no upload has touched), and exits when the API closes the socket.
- `once`: one request read from stdin and checked in this process (where pidfds are missing).

A check limits the address space (RLIMIT_AS), parses and checks the model (`onnxinfo.summary`) and writes
one JSON answer, the summary or {"error": ...}, to the request's answer file; stderr goes to its stderr file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

MEMORY_ERROR_EXIT = 3
OUTLINE_FROM = 16 << 20  # a model this large is summarised from its skeleton (its weights' bytes left out)


def check(request: dict[str, Any]) -> int:
    """Check one model under the request's memory limit; the exit code (the answer is in its file)."""
    import resource

    from registry import intake, onnxinfo
    from registry.errors import InvalidModel

    fd = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    out = os.open(request["answer"], os.O_WRONLY | os.O_TRUNC)
    memory_mib = int(request["memory_mib"])
    resource.setrlimit(resource.RLIMIT_AS, (memory_mib << 20, memory_mib << 20))
    main = request["main"]
    try:
        path = Path(request["path"])
        large = path.stat().st_size >= OUTLINE_FROM
        outline = intake.skeleton(path) if large else None
        referring = intake.skeleton(path, refer=True) if outline is not None else None
        answer: dict[str, Any] = onnxinfo.summary(path, main, outline, referring)
    except InvalidModel as exc:
        message = exc.message
        if "alloc failed" in message:  # protobuf's arena hit the address-space limit
            message = (f"{main}: parsing it needs more than {memory_mib} MiB "
                       "(TRTFARM_INTAKE_MEMORY_MIB plus 3x its size)")
        answer = {"error": {"message": message, "details": exc.details}}
    except MemoryError:
        return MEMORY_ERROR_EXIT
    with os.fdopen(out, "w") as f:
        json.dump(answer, f)
    return 0


def serve(fd: int) -> None:
    """The fork server's loop (see the module's doc)."""
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children; the API waits on pidfds
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the API, which closes the socket: then it exits
    while packet := sock.recv(1 << 16):
        request = json.loads(packet)
        pid = os.fork()
        if pid == 0:  # the child: check, then leave without running the server's cleanup
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                sock.close()
                code = check(request)
            except BaseException:  # noqa: BLE001 - reported through stderr and the exit
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        try:
            pidfds = [os.pidfd_open(pid)]
        except ProcessLookupError:  # it has finished (and been reaped) already
            pidfds = []
        socket.send_fds(sock, [str(pid).encode()], pidfds)
        for pidfd in pidfds:
            os.close(pidfd)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        import onnx.checker  # noqa: F401 - preloaded for every child: the point of the fork server
        import onnx.external_data_helper  # noqa: F401

        from registry import intake, onnxinfo  # noqa: F401
        from registry.errors import InvalidModel  # noqa: F401

        serve(int(sys.argv[2]))
    else:
        sys.exit(check(json.loads(sys.stdin.read())))
