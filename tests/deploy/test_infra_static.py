"""What CI can check of the deployment files without a container runtime, a cluster or Helm (infra/README.md,
"What CI checks"): docker-compose resolves compose.yaml, HAProxy accepts its config, every TRTFARM_* name the
files use is a real setting (and every value they give parses as one), farm.env and the chart's settings agree,
the Dockerfiles run non-root with health checks, and the Helm chart's values and template structure hold
together. Not checked: image builds, `helm template`/`helm lint` (no helm binary in Debian), Kubernetes schemas."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.infra import (
    CHART,
    CLIENT_ONLY,
    FARM_SERVICES,
    INFRA,
    TRTFARM_NAME,
    compose_config,
    read_env_file,
    service_env,
    setting_names,
)

SCANNED = [INFRA / "compose.yaml", INFRA / "farm.env", INFRA / ".env.example", INFRA / "docker" / "Dockerfile",
           INFRA / "docker" / "Dockerfile.gpu", CHART / "values.yaml", *sorted((CHART / "templates").iterdir())]


# ------------------------------------------------------------------------------------------ compose


def test_compose_config_resolves_the_topology() -> None:
    config = compose_config()
    services = config["services"]
    assert {"db", "redis", "s3", "s3-init", "migrate", "api", "proxy", "dispatcher", "worker-cpu",
            "worker-trt86", "worker-trt10"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2
    assert "--no-dispatcher" in services["api"]["command"]  # the dispatcher runs once, as its own service
    for name in ("api", "dispatcher", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("worker-trt86", "worker-trt10"):
        gpu = services[name]
        assert gpu["profiles"] == ["gpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert gpu["build"]["dockerfile"].endswith("Dockerfile.gpu")
        assert {"BASE_IMAGE", "TENSORRT_VERSION"} <= set(gpu["build"]["args"])
    versions = {services[n]["build"]["args"]["TENSORRT_VERSION"] for n in ("worker-trt86", "worker-trt10")}
    assert len(versions) == 2, "one GPU worker service per TensorRT version"


def test_compose_farm_services_get_farm_env_and_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.settings import Settings

    config = compose_config()
    shared = read_env_file(INFRA / "farm.env")
    for name in FARM_SERVICES:
        env = service_env(config, name)
        assert shared.items() <= env.items(), f"{name} lacks farm.env"
        for key in ("TRTFARM_DATABASE_URL", "TRTFARM_BROKER_URL", "TRTFARM_S3_ENDPOINT_URL"):
            assert key in env, f"{name} lacks {key}"
        # every value parses as the setting (a typo such as TRTFARM_AUTH=requried fails here)
        for key in list(os.environ):
            if key.startswith("TRTFARM_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.database_url == env["TRTFARM_DATABASE_URL"]
        assert settings.resolved_blob_url().startswith("s3://")
        settings.toolchain_entries()


def test_haproxy_accepts_the_shared_config() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed: scripts/setup installs it when run as root (apt-get install haproxy)"
    done = subprocess.run([haproxy, "-c", "-f", str(INFRA / "haproxy" / "haproxy.cfg")], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------- settings names


def test_every_trtfarm_name_is_a_setting() -> None:
    known = setting_names() | CLIENT_ONLY
    unknown = {}
    for path in SCANNED:
        names = set(TRTFARM_NAME.findall(path.read_text()))
        if names - known:
            unknown[str(path.relative_to(INFRA))] = sorted(names - known)
    assert not unknown, f"not fields of registry.settings.Settings: {unknown}"


def test_the_scan_sees_the_names_the_files_set() -> None:
    """A guard on the check above: it finds the names in each kind of file."""
    found = {p.name: set(TRTFARM_NAME.findall(p.read_text())) for p in SCANNED}
    assert {"TRTFARM_DATABASE_URL", "TRTFARM_BROKER_URL", "TRTFARM_GPU", "TRTFARM_WORKER_NAME"} <= found["compose.yaml"]
    assert {"TRTFARM_TOOLCHAINS", "TRTFARM_GPU", "TRTFARM_HOME"} <= found["Dockerfile.gpu"]
    assert {"TRTFARM_DATABASE_URL", "TRTFARM_S3_ENDPOINT_URL"} <= found["_helpers.tpl"]
    assert {"TRTFARM_GPU", "TRTFARM_TOOLCHAINS", "TRTFARM_WORKER_NAME"} <= found["worker-deployments.yaml"]


def test_farm_env_and_chart_settings_agree() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {k: str(v) for k, v in values["settings"].items()} == read_env_file(INFRA / "farm.env")


# ------------------------------------------------------------------------------------- Dockerfiles


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (INFRA / "docker" / name).read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_run_non_root_with_a_health_check(name: str) -> None:
    steps = _instructions(name)
    users = [arg for op, arg in steps if op == "USER"]
    assert users and not re.match(r"(root|0)(:|$)", users[-1].strip()), "the final stage runs as root"
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    assert any(op == "USER" for op, _ in steps[last_from:]) and any(op == "HEALTHCHECK" for op, _ in steps[last_from:])
    assert any(op == "CMD" and "trtfarm" in arg for op, arg in steps)


def test_api_health_check_targets_the_api_health_route() -> None:
    from api.app import create_app  # noqa: F401 - the route below exists in the app
    from api.routes.health import router

    paths = {route.path for route in router.routes}
    health = " ".join(arg for op, arg in _instructions("Dockerfile") if op == "HEALTHCHECK")
    assert "/healthz" in paths and ":8470/healthz" in health


def test_gpu_dockerfile_takes_base_image_and_tensorrt_version() -> None:
    steps = _instructions("Dockerfile.gpu")
    args = {arg.split("=", 1)[0] for op, arg in steps if op == "ARG"}
    assert {"BASE_IMAGE", "TENSORRT_VERSION"} <= args
    assert ("FROM", "${BASE_IMAGE}") in steps
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "TRTFARM_TOOLCHAINS=tensorrt=${TENSORRT_PYTHON}" in env


# ------------------------------------------------------------------------------------------- Helm


def _values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "trtfarm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_values_workers_list() -> None:
    workers = _values()["workers"]
    assert workers, "no GPU worker Deployments"
    seen = set()
    for w in workers:
        assert set(w) >= {"tensorrtVersion", "sku", "nodeSelector", "replicas", "image"}, w
        assert isinstance(w["tensorrtVersion"], str), "quote tensorrtVersion (8.10 must not become 8.1)"
        assert isinstance(w["nodeSelector"], dict) and w["nodeSelector"]
        assert isinstance(w["replicas"], int) and w["replicas"] >= 0
        assert w["image"]["repository"] and w["image"]["tag"]
        assert re.fullmatch(r"[a-z0-9-]+", w["sku"]), "sku goes into a Deployment name"
        assert (w["tensorrtVersion"], w["sku"]) not in seen, "two Deployments of one (version, sku)"
        seen.add((w["tensorrtVersion"], w["sku"]))


ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
BLOCK_OPEN = re.compile(r"^(if|range|with|define)\b")


def _actions(text: str) -> list[str]:
    return [a for a in ACTION.findall(text) if not a.startswith("/*")]


@pytest.mark.parametrize("template", sorted(p.name for p in (CHART / "templates").iterdir()))
def test_template_structure(template: str) -> None:
    """Go-template blocks balance, `.Values` paths exist in values.yaml, `.Values` inside range/with is `$.Values`
    (`.` is the item there), every include names a defined template. Structure only: nothing is rendered."""
    text = (CHART / "templates" / template).read_text()
    assert text.count("{{") == text.count("}}")
    values = _values()
    defined = set(re.findall(r'define\s+"([^"]+)"', (CHART / "templates" / "_helpers.tpl").read_text()))
    stack: list[str] = []
    for action in _actions(text):
        scoped = any(kind in ("range", "with") for kind in stack)  # before this action's own block opens
        opened = BLOCK_OPEN.match(action)
        if opened:
            stack.append(opened.group(1))
        elif action == "end":
            assert stack, f"{template}: `end` without a block"
            stack.pop()
        elif action.startswith("else"):
            assert stack and stack[-1] in ("if", "with", "range"), f"{template}: stray else"
        for match in re.finditer(r"(\$?)\.Values((?:\.[A-Za-z0-9_]+)*)", action):
            dollar, path = match.groups()
            assert dollar or not scoped, f"{template}: `.Values{path}` inside range/with"
            node = values
            for part in filter(None, path.split(".")):
                assert isinstance(node, dict) and part in node, f"{template}: .Values{path} is not in values.yaml"
                node = node[part]
        for name in re.findall(r'include\s+"([^"]+)"', action):
            assert name in defined, f"{template}: include of undefined {name!r}"
    assert not stack, f"{template}: unclosed {stack}"


def test_gpu_workers_template_asks_one_gpu_with_node_selectors() -> None:
    text = (CHART / "templates" / "worker-deployments.yaml").read_text()
    assert "range $w := .Values.workers" in text
    assert text.count("nvidia.com/gpu: 1") == 2  # requests and limits
    assert "toYaml $w.nodeSelector" in text and "$w.image.repository" in text


def test_static_manifest_skeletons_are_kubernetes_objects() -> None:
    """Each template's lines outside template actions still name apiVersion and kind (a cheap guard for the
    files no renderer checks here)."""
    expected = {"api-deployment.yaml": "Deployment", "api-service.yaml": "Service", "ingress.yaml": "Ingress",
                "migrations-job.yaml": "Job", "dispatcher-deployment.yaml": "Deployment", "secret.yaml": "Secret",
                "configmap.yaml": "ConfigMap", "worker-deployments.yaml": "Deployment",
                "servicemonitor.yaml": "ServiceMonitor"}
    for name, kind in expected.items():
        text = (CHART / "templates" / name).read_text()
        assert re.search(rf"^kind: {kind}$", text, re.M) and re.search(r"^apiVersion: \S+$", text, re.M), name
    job = (CHART / "templates" / "migrations-job.yaml").read_text()
    assert "helm.sh/hook: pre-install,pre-upgrade" in job and '"trtfarm", "db", "upgrade"' in job
    assert "monitoring.coreos.com/v1" in (CHART / "templates" / "servicemonitor.yaml").read_text()
    api = (CHART / "templates" / "api-deployment.yaml").read_text()
    assert all(p in api for p in ("livenessProbe", "readinessProbe", "/readyz", "/healthz", "resources"))
