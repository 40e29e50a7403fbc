"""The code's shape, checked on every run (docs/design.md, "Layout"): who may import whom, and sizes.

- `registry/` (domain, SDK, its CLI) imports no fastapi, celery, `api` or `workers`, not even inside
  functions; `workers/` never touches ORM tables (`registry.db.tables`): services do.
- Toolchain runners (`workers/toolchains/`) run in a foreign interpreter: they import only the standard
  library, numpy, their own runtime and each other.
- No production module over 600 lines; no function over 60 lines (migrations excepted).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("registry", "workers", "api")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
RUNNER_ALLOWED = {"numpy", "tensorrt", "onnxruntime", "onnx"}  # onnx: optional, where the toolchain has it


def modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, inside functions too."""
    tree = ast.parse(path.read_text(), str(path))
    package = package if package is not None else ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.append((node.lineno, base))
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def offending(paths: list[Path], bad: callable) -> list[str]:
    return [f"{rel(p)}:{line} imports {name}" for p in paths for line, name in imported(p) if bad(name)]


def top(name: str) -> str:
    return name.split(".")[0]


def test_registry_imports_no_server_framework_nor_the_edges() -> None:
    banned = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "api", "workers"}
    assert offending(modules("registry"), lambda n: top(n) in banned) == []


def test_workers_leave_orm_rows_to_the_services() -> None:
    assert offending(modules("workers"),
                     lambda n: n == "registry.db.tables" or n.startswith("registry.db.tables.")) == []


def test_runners_import_only_stdlib_numpy_their_runtime_and_each_other() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}

    def bad(name: str) -> bool:
        own = name.startswith("workers.toolchains") or top(name) == "toolchains"  # its name in the runner process
        return not (top(name) in stdlib or top(name) in RUNNER_ALLOWED or own)

    assert offending(modules("workers/toolchains"), bad) == []


def test_modules_stay_small() -> None:
    big = [f"{rel(p)}: {n} lines" for p in modules(*PACKAGES)
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert big == []


def test_functions_fit_on_a_screen() -> None:
    long = []
    for path in modules(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{rel(path)}:{node.lineno} {node.name}: {lines} lines")
    assert long == []


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    import fastapi.routing\n", "fastapi.routing"),  # a lazy import counts too
    ("from celery import Celery\n", "celery"),
    ("from ..common import log\n", "workers.toolchains.common"),  # relative imports resolved
    ("from . import options\n", "workers.toolchains.tensorrt_runner"),
])
def test_the_import_checker_sees_every_form(tmp_path: Path, source: str, expected: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert [name for _, name in imported(probe, "workers.toolchains.tensorrt_runner")] == [expected]
