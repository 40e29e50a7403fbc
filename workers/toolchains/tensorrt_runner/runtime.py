"""The tensorrt module and the objects every command needs: import, version, logger, plugins."""

from __future__ import annotations

import ctypes
import platform
import re
import sys

from ..common import RunnerError, log

TIMING_CACHE_UNUSED = re.compile(r"timing cache will not be used", re.IGNORECASE)


def import_trt():
    """The tensorrt module of this interpreter (tests install a fake one in sys.modules)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken native library
        raise RunnerError(
            "invalid_input",
            f"tensorrt is not importable in the interpreter that ran this runner "
            f"({sys.executable}, Python {platform.python_version()}): {type(exc).__name__}: {exc}",
            hint="point TRTFARM_TOOLCHAINS at a TensorRT interpreter, e.g. tensorrt=/opt/trt86/bin/python") from None
    return trt


def version_tuple(text: str) -> tuple[int, ...]:
    """'8.6.0' -> (8, 6, 0); '10.3.0.post1' -> (10, 3, 0)."""
    parts = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


_logger: list = []  # the process's one logger (a warm runner runs many commands; see make_logger)


def make_logger(trt, verbose: bool = False):
    """The logger for this command: one per process, its records emptied for each command. TensorRT keeps
    the first logger a process gives it for some messages ("the logger passed into createInferBuilder
    differs from one already provided"), so a warm runner (common.serve) must not make a new one each time."""
    if not _logger or _logger[0].trt is not trt:
        _logger[:] = [_logger_class(trt)()]
    logger = _logger[0]
    logger.verbose, logger.errors, logger.warnings, logger.partial_miss = verbose, [], [], False
    return logger


def _logger_class(trt):
    class RunnerLogger(trt.ILogger):
        """Writes every message to stderr with its severity; remembers errors and timing-cache misses."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.trt, self.verbose = trt, False
            self.errors: list[str] = []
            self.warnings: list[str] = []
            self.partial_miss = False

        def log(self, severity, msg):
            name = str(getattr(severity, "name", severity)).rsplit(".", 1)[-1]
            if name == "VERBOSE" and not self.verbose:
                return
            sys.stderr.write(f"[TRT] [{name}] {msg}\n")
            if name in ("ERROR", "INTERNAL_ERROR"):
                self.errors.append(msg)
            elif name == "WARNING":
                self.warnings.append(msg)
            if name in ("ERROR", "WARNING"):  # 8.6 logs "The timing cache will not be used!" as an ERROR
                self.partial_miss = self.partial_miss or bool(TIMING_CACHE_UNUSED.search(msg))

    return RunnerLogger


def load_plugins(trt, logger, libraries: list[str]) -> list:
    """TensorRT's own plugins (libnvinfer_plugin: EfficientNMS_TRT and the rest) registered first, then each
    plugin library loaded (kept alive by the caller: a library must outlive the engines using it), before any
    model is parsed or plan deserialized. A library registers its plugin creators as it loads; the log names
    what each one added to the registry."""
    try:
        trt.init_libnvinfer_plugins(logger, "")
    except Exception as exc:  # noqa: BLE001 - TensorRT's own plugins are optional for most models
        if libraries:
            raise RunnerError("build_error", f"init_libnvinfer_plugins failed: {exc}") from None
        log(f"TensorRT's plugin library did not initialise ({exc}); models that need its plugins will fail")
    handles = []
    for path in libraries:
        before = plugin_creators(trt)
        try:
            handles.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
        except OSError as exc:
            raise RunnerError("invalid_input", f"cannot load plugin library {path}: {exc}") from None
        added = [c for c in plugin_creators(trt) if c not in before]
        log(f"loaded plugin library {path}: " + (", ".join(added) + " registered" if added else
                                                   "it registered no new plugin creator"))
    return handles


def plugin_creators(trt) -> list[str]:
    """The plugin registry's creators as 'name (version N[, namespace S])'; [] where the registry is not readable."""
    try:
        creators = trt.get_plugin_registry().plugin_creator_list
    except Exception:  # noqa: BLE001 - only for the log
        return []
    found = []
    for creator in creators:
        namespace = getattr(creator, "plugin_namespace", "")
        found.append(f"{creator.name} (version {creator.plugin_version}" + (f", namespace {namespace})" if namespace
                                                                            else ")"))
    return found
