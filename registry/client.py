"""The SDK: talk to a farm over HTTP (httpx only) and keep a verified local engine cache.

    farm = Farm("http://farm:8000", token="...")
    build = farm.submit("model.onnx", "tensorrt==8.6.0@h100-80gb-hbm3", {"precision": ["fp16"]})
    plan = farm.fetch("model.onnx")               # detects this host's runtime, downloads, verifies
                                                  # (cached as …/sha256/<ab>/<hex>.plan or .ort)
    plan = farm.fetch("model.onnx")               # a local hit: no network at all

Imports only httpx, pydantic and the stdlib-only parts of `registry`; `onnx` is used when installed to
find a model's external-data files (registry.onnxinfo), and is never required. Errors the farm answers
come back as their own classes (registry.errors): `except NoCompatibleEngine` works.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

import httpx

from registry import __version__, onnxinfo
from registry.atomic import PART_PREFIX, atomic_file, sweep
from registry.calibclient import CalibrationLike, CalibrationOps
from registry.compat import Runtime
from registry.digests import ModelFile, canonical_json, digest_of_file, is_digest, model_id, sha256_hex
from registry.errors import (
    BuildCancelled,
    BuildFailed,
    DigestMismatch,
    FarmError,
    InvalidInput,
    InvalidModel,
    ModelNotFound,
    NoCompatibleEngine,
    RemoteError,
    Unreachable,
    error_for_code,
)
from registry.eventclient import BuildEvent, EventOps, Progress
from registry.fleetclient import FleetOps
from registry.keys import spec_family
from registry.localfiles import PathDigests, cached_ok, copy_out, default_cache_dir, mark_verified, stamp_path
from registry.localread import LocalReads
from registry.planheader import check_loadable
from registry.pluginclient import PluginLike, PluginOps, warn_plugins
from registry.runtime import as_runtime
from registry.schemas import (
    BuildInfo,
    BuildList,
    BuildRequest,
    EngineInfo,
    EngineList,
    ModelInfo,
    Resolution,
    WorkerInfo,
)
from registry.spec import BuildSpec, parse_spec, shape_text
from registry.status import BuildStatus
from registry.transfer import receive

MAX_REDIRECTS = 5
MODEL_PREFIX_TEXT = re.compile(r"^(sha256:)?[0-9a-f]{8,64}$")
REVALIDATE_S = 300.0  # a local answer older than this is checked with the farm (one resolve) before use
PART_IDLE_S = 15 * 60  # a download untouched this long was killed: its temp file is swept
SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")  # an engine file's suffix that may name a cached file
SpecLike = BuildSpec | Mapping[str, Any] | None


class Farm(FleetOps, CalibrationOps, PluginOps, EventOps, LocalReads):
    """A client of one farm. Thread-compatible (one per thread), usable as a context manager."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        revalidate_after_s: float | None = None,
        local_reads: bool | None = None,
    ) -> None:
        url = url or os.environ.get("TRTFARM_URL")
        if not url:
            raise InvalidInput("set TRTFARM_URL or pass url= (e.g. Farm('http://localhost:8000'))")
        self.url = url.rstrip("/")
        self.token = token if token is not None else (os.environ.get("TRTFARM_TOKEN") or None)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self._timeout = timeout
        self._transport = transport
        # a local answer older than this is checked with the farm on its next use (TRTFARM_REVALIDATE_S)
        self.revalidate_after_s = revalidate_after_s if revalidate_after_s is not None else float(
            os.environ.get("TRTFARM_REVALIDATE_S") or REVALIDATE_S)
        headers = {"User-Agent": f"trtfarm/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._bare: httpx.Client | None = None  # for other origins (presigned URLs): never carries the token
        self._detected: Runtime | None = None  # 'auto', detected once per Farm
        self._swept = False
        self._local_reads = local_reads  # copy engines from the farm's disk (registry.localread); None: if on loopback

    # -------------------------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._http.close()
        if self._bare is not None:
            self._bare.close()

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Farm({self.url!r})"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the farm at {self.url}: {exc}") from exc
        raise_for_error(response)
        return response

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self._request("GET", path, **kwargs).json()

    # ---------------------------------------------------------------------------------- models

    def model_files(self, path: str | os.PathLike[str],
                    external_data: Sequence[os.PathLike[str] | str] | None = None) -> list[tuple[ModelFile, Path]]:
        """The model's files (the .onnx first) with their digests, as the server will see them; remembered
        by path while no file changes (registry.localfiles)."""
        if external_data is not None:
            return [(_model_file(rel, local), local) for rel, local in model_layout(Path(path), external_data)]
        layout = PathDigests(self.cache_dir / "paths").layout(
            Path(path), lambda: [(rel, local, *digest_of_file(local)) for rel, local in model_layout(Path(path))])
        return [(ModelFile(rel, digest, size), local) for rel, local, digest, size in layout]

    def model_id(self, path: str | os.PathLike[str],
                 external_data: Sequence[os.PathLike[str] | str] | None = None) -> str:
        """The id the farm gives this model (sha256 of the .onnx, or of the manifest with external data)."""
        return model_id(f for f, _ in self.model_files(path, external_data))

    def has_model(self, model: str) -> bool:
        """HEAD /v1/models/{id}."""
        try:
            response = self._http.head(f"/v1/models/{model}")
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the farm at {self.url}: {exc}") from exc
        if response.status_code == 404:
            return False
        raise_for_error(response)
        return True

    def model(self, model: str) -> ModelInfo:
        return ModelInfo.model_validate(self._get(f"/v1/models/{model}"))

    def upload(self, path: str | os.PathLike[str],
               external_data: Sequence[os.PathLike[str] | str] | None = None) -> ModelInfo:
        """Upload a model unless the farm has it already (HEAD first). Files are streamed from disk."""
        from base64 import b64encode

        files = self.model_files(path, external_data)
        mid = model_id(f for f, _ in files)
        if self.has_model(mid):
            return self.model(mid)
        with ExitStack() as stack:  # each part states its digest (RFC 9530): the farm may send it on as it arrives
            parts = [
                ("file" if i == 0 else "files",
                 (f.path, stack.enter_context(open(local, "rb")), "application/octet-stream",
                  {"Content-Digest": f"sha-256=:{b64encode(bytes.fromhex(f.sha256[7:])).decode()}:"}))
                for i, (f, local) in enumerate(files)
            ]
            info = ModelInfo.model_validate(self._request("POST", "/v1/models", files=parts).json())
        if info.id != mid:
            raise DigestMismatch(f"the farm named the uploaded model {info.id} but this SDK computed {mid}",
                                 details={"local": mid, "remote": info.id})
        return info

    def _model_ref(self, model: str | os.PathLike[str], *, upload: bool) -> str:
        """A model id from an id or a path (uploading the path when `upload`)."""
        if isinstance(model, str) and is_digest(model):
            return model
        if isinstance(model, str) and MODEL_PREFIX_TEXT.match(model) and not Path(model).is_file():
            return self.model(model).id  # a prefix, as the tables show it: the farm knows the whole id
        if not Path(model).is_file():
            raise InvalidInput(f"model {str(model)!r} is neither a model id (sha256:<hex>) nor an existing .onnx file")
        return self.upload(model).id if upload else self.model_id(model)

    # ---------------------------------------------------------------------------------- builds

    def submit(
        self,
        model: str | os.PathLike[str],
        target: str | Runtime,
        spec: SpecLike = None,
        *,
        plugins: Sequence[PluginLike] = (),
        calibration: CalibrationLike = None,
        wait: bool = True,
        progress: Progress | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
    ) -> BuildInfo:
        """Request a build (an existing build for the same key is returned). With `wait`, follow its events until it
        ends (Farm.wait: `progress(event)` for each BuildEvent).

        `model` is a model id or a path (uploaded first if the farm lacks it); so is `calibration` (INT8: a
        digest, or an .npz data set or calibration cache to upload), and each of `plugins` (TensorRT plugin
        libraries: uploading one needs an admin key; TRTFARM_ALLOWED_PLUGINS must allow it). A failed build raises
        BuildFailed (`.build` holds the BuildInfo), a cancelled one BuildCancelled, a timeout BuildTimeout."""
        request = BuildRequest(
            model=self._model_ref(model, upload=True),
            target=target.target() if isinstance(target, Runtime) else str(target),
            spec=spec_payload(spec),
            plugins=self._plugin_refs(plugins),
            calibration=self._calibration_ref(calibration),
        )
        info = BuildInfo.model_validate(
            self._request("POST", "/v1/builds", json=request.model_dump(mode="json")).json())
        if not wait:
            return info
        return self.wait(info, progress=progress, poll_interval=poll_interval, timeout=timeout)

    def build(self, build_id: str) -> BuildInfo:
        return BuildInfo.model_validate(self._get(f"/v1/builds/{build_id}"))

    def builds(
        self, *, status: str | None = None, model: str | None = None, toolchain: str | None = None,
        limit: int | None = None, offset: int | None = None, target: str | None = None, submitter: str | None = None,
    ) -> BuildList:
        """GET /v1/builds with the given filters (None = no filter; `submitter`: an API key's name)."""
        params = {k: v for k, v in dict(status=status, model=model, toolchain=toolchain, target=target,
                                        submitter=submitter, limit=limit, offset=offset).items() if v is not None}
        return BuildList.model_validate(self._get("/v1/builds", params=params))

    def log(self, build_id: str) -> str:
        return self._request("GET", f"/v1/builds/{build_id}/log").text

    def cancel(self, build_id: str) -> BuildInfo:
        return BuildInfo.model_validate(self._request("POST", f"/v1/builds/{build_id}/cancel").json())

    # --------------------------------------------------------------------------------- engines

    def engines(self, model: str | os.PathLike[str]) -> list[EngineInfo]:
        """Every engine of a model (id or path; a path is hashed locally, not uploaded)."""
        return EngineList.model_validate(
            self._get("/v1/engines", params={"model": self._model_ref(model, upload=False)})).items

    def engine(self, engine_id: str) -> EngineInfo:
        return EngineInfo.model_validate(self._get(f"/v1/engines/{engine_id}"))

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo.model_validate(w) for w in self._get("/v1/workers")]

    def runtime(self, runtime: str | Runtime | Any = "auto") -> Runtime:
        """A Runtime from 'auto' (detected once per Farm), a runtime string, or a Runtime."""
        if runtime is None or runtime == "auto":
            if self._detected is None:
                self._detected = as_runtime("auto")
            return self._detected
        return as_runtime(runtime)

    def resolve(self, model: str | os.PathLike[str], runtime: str | Runtime | Any = "auto", spec: SpecLike = None,
                shapes: Mapping[str, Sequence[int]] | None = None) -> Resolution:
        """The engine the farm picks for this runtime (NoCompatibleEngine when none loads on it).

        `shapes` ({input: shape}) keeps only engines whose optimization profiles hold those shapes."""
        params = resolve_query(self._model_ref(model, upload=False), self.runtime(runtime), spec, shapes)
        return Resolution.model_validate(self._get("/v1/engines/resolve", params=params))

    # ------------------------------------------------------------------------------------ fetch

    def fetch(
        self,
        model: str | os.PathLike[str],
        runtime: str | Runtime | Any = "auto",
        spec: SpecLike = None,
        *,
        dest: str | os.PathLike[str] | None = None,
        build_if_missing: bool = False,
        target: str | None = None,
        wait_timeout: float | None = None,
        progress: Progress | None = None,
        refresh: bool = False,
        verify_cached: bool = False,
        shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> Path:
        """The local path of a verified engine for `runtime` (detected with 'auto').

        A question answered before (same farm, model, runtime, spec family) is answered from the local
        index with no network call while its blob is cached; `refresh=True` asks the farm again. With
        `build_if_missing`, a missing engine is built (target from `target` or the runtime) and waited for.
        `dest` gets a copy of the engine; its path is returned then. `shapes` ({input: shape}) asks for an engine
        whose optimization profiles hold those shapes (a 422 naming the engines' ranges when none does). An engine
        built with plugin libraries warns PluginLibrariesNeeded (EngineInfo.plugins; registry/pluginclient.py).
        """
        rt = self.runtime(runtime)
        mid = self._model_ref(model, upload=False)
        question = self._question(mid, rt, spec, shapes)
        engine = None if refresh else self._index_hit(question, verify_cached)
        if engine is not None and self._stale(question):
            engine = self._revalidated(question, engine, mid, rt, spec, shapes)
        if engine is None:
            engine = self._resolve_or_build(model, mid, rt, spec, build_if_missing, target, wait_timeout,
                                            progress, shapes).engine
            self._ensure_blob(engine, verify_cached)
            self._index_write(question, engine)
        blob = self.engine_path(engine)
        check_loadable(blob, engine.toolchain, engine.version_compatible, rt.version)
        warn_plugins(engine)
        return blob if dest is None else copy_out(blob, Path(dest), Path(engine.filename).name or blob.name)

    def _resolve_or_build(
        self, model: Any, mid: str, rt: Runtime, spec: SpecLike, build_if_missing: bool,
        target: str | None, wait_timeout: float | None, progress: Progress | None,
        shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> Resolution:
        try:
            return self.resolve(mid, rt, spec, shapes)
        except (NoCompatibleEngine, ModelNotFound) as exc:
            if not build_if_missing:
                raise
            missing_model = isinstance(exc, ModelNotFound)
        if missing_model and not (isinstance(model, str) and is_digest(model)):
            self.upload(model)
        self.submit(mid, target or rt.target(), spec, wait=True, timeout=wait_timeout, progress=progress)
        return self.resolve(mid, rt, spec, shapes)

    def blob_path(self, digest: str, suffix: str = "") -> Path:
        """Where the cache keeps a blob: cache_dir/engines/sha256/<ab>/<hex><suffix>."""
        if not is_digest(digest):
            raise DigestMismatch(f"the farm sent {digest!r} as a digest; expected sha256:<64 hex>")
        hexdigest = digest.removeprefix("sha256:")
        return self.cache_dir / "engines" / "sha256" / hexdigest[:2] / f"{hexdigest}{suffix}"

    def engine_path(self, engine: EngineInfo) -> Path:
        """Where the cache keeps an engine: its blob path with the engine file's suffix (.plan, .ort), so that
        runtimes which go by the suffix (ONNX Runtime's ORT format) load it as it is."""
        suffix = Path(engine.filename).suffix
        return self.blob_path(engine.digest, suffix if SAFE_SUFFIX.fullmatch(suffix) else "")

    def _ensure_blob(self, engine: EngineInfo, verify: bool) -> Path:
        path = self.engine_path(engine)
        if cached_ok(path, engine.digest, engine.size, verify, self._stamp(path)):
            return path
        return self.download(engine, path)

    def _stamp(self, path: Path) -> Path:
        return stamp_path(self.cache_dir, path)

    def download(self, engine: EngineInfo, path: Path | None = None) -> Path:
        """Stream an engine into the cache, verify sha256 and size, atomically rename; nothing left on failure."""
        path = path or self.engine_path(engine)
        if not self._swept:  # temp files of an SDK killed mid-download (idle for PART_IDLE_S)
            self._swept = True
            sweep(self.cache_dir, f"{PART_PREFIX}*", PART_IDLE_S, recursive=True)
        with atomic_file(path, "wb", file_mode=0o444) as out:
            got = self._read_local(engine, out)  # registry.localread: a farm on this host
            if got != (engine.digest, engine.size):
                out.seek(0)
                out.truncate()
                got = self._receive(engine, out)
            digest, size = got
            if digest != engine.digest or size != engine.size:
                raise DigestMismatch(
                    f"engine {engine.id}: downloaded {size} bytes hashing to {digest}; "
                    f"the farm says {engine.size} bytes, "
                    f"{engine.digest}. Nothing was kept; try again, and report it if it repeats",
                    details={"engine": engine.id, "expected": engine.digest, "got": digest, "size": size},
                )
        mark_verified(path, self._stamp(path))
        return path

    def _receive(self, engine: EngineInfo, out: IO[bytes]) -> tuple[str, int]:
        with self._artifact(engine.id) as response:
            try:
                return receive(response, out, limit=engine.size)
            except httpx.TransportError as exc:  # the farm refuses to finish a blob that fails its digest, too
                raise Unreachable(f"the download of engine {engine.id} broke off ({exc}); nothing was kept. "
                                  "Try again; if it repeats, the farm's copy may be corrupt (see its log)") from exc

    @contextmanager
    def _artifact(self, engine_id: str) -> Iterator[httpx.Response]:
        """GET the artifact, following redirects by hand: the token goes only to the farm's own origin."""
        url = self._http.build_request("GET", f"/v1/engines/{engine_id}/artifact").url
        for _ in range(MAX_REDIRECTS + 1):
            client = self._http if _same_origin(url, self._http.base_url) else self._bare_client()
            try:
                response = client.send(client.build_request("GET", url), stream=True)
            except httpx.TransportError as exc:
                raise Unreachable(
                    f"cannot download engine {engine_id} from {url.copy_with(query=None)}: {exc}") from exc
            try:
                if response.is_redirect and "location" in response.headers:
                    url = response.url.join(response.headers["location"])
                    continue
                if response.is_error:
                    response.read()
                    raise_for_error(response)
                yield response
                return
            finally:
                response.close()
        raise RemoteError(508, "too_many_redirects", f"engine {engine_id}: more than {MAX_REDIRECTS} redirects")

    def _bare_client(self) -> httpx.Client:
        if self._bare is None:
            self._bare = httpx.Client(timeout=self._timeout, transport=self._transport,
                                      headers={"User-Agent": f"trtfarm/{__version__}"})
        return self._bare

    # ------------------------------------------------------------------------------ local index

    def _question(self, mid: str, rt: Runtime, spec: SpecLike,
                  shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
        """What a fetch asks; the local index is keyed by its canonical JSON."""
        question = {"farm": self.url, "model": mid, "runtime": rt.to_query(), "spec_family": family_of(spec)}
        if shapes:  # absent without shapes: the index of earlier fetches keeps answering them
            question["shapes"] = {name: [int(d) for d in dims] for name, dims in sorted(shapes.items())}
        return question

    def _index_path(self, question: dict[str, Any]) -> Path:
        return self.cache_dir / "index" / f"{sha256_hex(canonical_json(question))}.json"

    def _index_hit(self, question: dict[str, Any], verify: bool) -> EngineInfo | None:
        try:
            engine = EngineInfo.model_validate_json(self._index_path(question).read_bytes())
            path = self.engine_path(engine)
        except (OSError, ValueError, FarmError):
            return None
        return engine if cached_ok(path, engine.digest, engine.size, verify, self._stamp(path)) else None

    def _stale(self, question: dict[str, Any]) -> bool:
        try:
            return time.time() - self._index_path(question).stat().st_mtime > self.revalidate_after_s
        except OSError:
            return False

    def _revalidated(self, question: dict[str, Any], engine: EngineInfo, mid: str, rt: Runtime, spec: SpecLike,
                     shapes: Mapping[str, Sequence[int]] | None) -> EngineInfo | None:
        """The local answer, still the farm's (its index entry touched), or None when the farm has a better one
        now. A farm that cannot be asked leaves the local answer standing: a host keeps working offline."""
        try:
            best = self.resolve(mid, rt, spec, shapes).engine
        except FarmError:
            return engine
        if best.id != engine.id:
            return None
        os.utime(self._index_path(question))
        return engine

    def _index_write(self, question: dict[str, Any], engine: EngineInfo) -> None:
        with atomic_file(self._index_path(question), "w") as f:
            f.write(engine.model_dump_json())

    def cached(self, model: str | os.PathLike[str], runtime: str | Runtime | Any = "auto",
               spec: SpecLike = None, shapes: Mapping[str, Sequence[int]] | None = None) -> Path | None:
        """The engine a previous fetch of this question stored, if still cached (no network)."""
        question = self._question(self._model_ref(model, upload=False), self.runtime(runtime), spec, shapes)
        engine = self._index_hit(question, verify=False)
        return None if engine is None else self.engine_path(engine)


# ------------------------------------------------------------------------------------ helpers


def raise_for_error(response: httpx.Response) -> None:
    """Any 4xx/5xx → the error class of the farm's JSON body `code` (RemoteError for a code this SDK does
    not know, or an answer that is not the farm's JSON error: a proxy's 502, say)."""
    if response.status_code < 400:
        return
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and "message" in body:
        details = body.get("details")
        raise error_for_code(body["code"], str(body["message"]), status=status,
                             details=details if isinstance(details, dict) else None)
    text = response.text.strip()[:500] if response.text else ""
    if isinstance(body, dict) and "detail" in body:
        text = str(body["detail"])[:500]
    raise RemoteError(status, f"http_{status}", text or response.reason_phrase or f"HTTP {status}")


def check_succeeded(info: BuildInfo) -> BuildInfo:
    """Return a succeeded build; raise BuildFailed / BuildCancelled (with `.build`) otherwise."""
    if info.status == BuildStatus.SUCCEEDED:
        return info
    if info.status == BuildStatus.CANCELLED:
        raise BuildCancelled(f"build {info.id} ({info.target}) was cancelled", build=info, details={"build": info.id})
    why = f"{info.error.code}: {info.error.message}" if info.error else "no error recorded"
    raise BuildFailed(
        f"build {info.id} ({info.target}) failed after {info.attempt} attempt(s): {why}. Log: trtfarm log {info.id}",
        build=info, details={"build": info.id, "error": info.error.model_dump() if info.error else None},
    )


def spec_payload(spec: SpecLike) -> dict[str, Any]:
    """A spec validated locally, sent with only the fields that differ from defaults (the server fills them)."""
    if spec is None:
        return {}
    parsed = parse_spec(spec if isinstance(spec, BuildSpec) else dict(spec))
    return parsed.model_dump(mode="json", exclude_defaults=True)


def family_of(spec: SpecLike) -> str | None:
    """registry.keys.spec_family of a spec (None for no spec: any family)."""
    return None if spec is None else spec_family(parse_spec(spec if isinstance(spec, BuildSpec) else dict(spec)))


def resolve_query(model: str, runtime: Runtime, spec: SpecLike = None,
                  shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Query parameters of GET /v1/engines/resolve."""
    params: dict[str, Any] = {"model": model, **runtime.to_query()}
    if (family := family_of(spec)) is not None:
        params["spec_family"] = family
    if shapes:
        params["shape"] = [f"{name}:{shape_text(dims)}" for name, dims in shapes.items()]
    return params


def model_layout(path: Path, external_data: Sequence[os.PathLike[str] | str] | None = None) -> list[tuple[str, Path]]:
    """(relative '/' path, local path) of a model's files, the .onnx first.

    External data: `external_data` when given (paths relative to the model's folder or to the current
    directory); else the locations recorded in the model when `onnx` is installed; else none.
    """
    if not path.is_file():
        raise InvalidModel(f"model file {str(path)!r} does not exist")
    folder = path.resolve().parent
    if external_data is None:
        extra = [folder / loc for loc in onnxinfo.local_layout(path)]
    else:
        extra = [_locate(Path(p), folder) for p in external_data]
    layout = [(path.name, path)]
    seen = {path.name}
    for local in extra:
        rel = _relative_inside(local, folder, path)
        if rel not in seen:
            seen.add(rel)
            layout.append((rel, local))
    return layout


def _locate(p: Path, folder: Path) -> Path:
    if p.is_absolute() or not (folder / p).exists():
        return p
    return folder / p


def _relative_inside(local: Path, folder: Path, model: Path) -> str:
    try:
        rel = local.resolve().relative_to(folder)
    except ValueError:
        raise InvalidModel(f"external data {str(local)!r} of {str(model)!r} must be inside the model's folder "
                           f"{str(folder)!r}") from None
    if not local.is_file():
        raise InvalidModel(f"external data file {str(local)!r} of {str(model)!r} does not exist")
    return PurePosixPath(*rel.parts).as_posix()


def _model_file(rel: str, local: Path) -> ModelFile:
    digest, size = digest_of_file(local)
    return ModelFile(rel, digest, size)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port or _default_port(a)) == (b.scheme, b.host, b.port or _default_port(b))


def _default_port(url: httpx.URL) -> int | None:
    return {"http": 80, "https": 443}.get(url.scheme)


__all__ = ["BuildEvent", "Farm", "raise_for_error"]
