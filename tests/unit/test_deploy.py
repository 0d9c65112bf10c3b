"""The container image (Dockerfile, .dockerignore) and the Kubernetes manifests (deploy/k8s)
agree with the settings and with the app's routes: the port, the user, the stop signal
and grace period against DRAIN_TIMEOUT, the probes and health check on real routes.

Each check returns what is wrong, so the tests below also show each one catching a broken
copy of the files (a grace period under the drain, a probe on the wrong route, root, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Final

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from app.config import Settings, load_settings
from app.errors import ConfigError
from tests.deploy_files import (
    DOCKERFILE,
    DOCKERIGNORE,
    K8S_DIR,
    NOT_SETTINGS,
    Stage,
    dockerfile_stages,
    dockerignore_patterns,
    exec_form,
    healthcheck,
    ignored,
    image,
    load_yaml,
    manifests,
    url_path,
)
from tests.support import ROOT

SETTING_NAMES: Final = {f.name.upper() for f in fields(Settings)}
# After the drain, sessions' agents and models stop under STOP_TIMEOUT and the process
# exits; DRAIN_TIMEOUT's own doc asks the platform for about 10 s beyond the drain.
SHUTDOWN_MARGIN: Final = 10
SESSIONS_METRIC: Final = "voice_sessions_active"  # the metrics' active-sessions gauge
Objects = dict[tuple[str, str], dict[str, Any]]

pytestmark = pytest.mark.anyio


def routes(app: Starlette) -> set[str]:
    """The app's plain HTTP routes (not /ws, nor the page mounted at /)."""
    return {route.path for route in app.routes if isinstance(route, Route)}


def settings_in(environ: dict[str, str]) -> tuple[Settings | None, list[str]]:
    names = [f"{name} is not a setting" for name in environ if name not in SETTING_NAMES]
    try:
        return load_settings(environ, env_file=None), names
    except ConfigError as exc:
        return None, [*names, str(exc)]


def image_settings(stage: Stage) -> dict[str, str]:
    return {name: value for name, value in stage.env().items() if not NOT_SETTINGS.fullmatch(name)}


def image_problems(text: str, http_routes: set[str]) -> list[str]:
    stage = dockerfile_stages(text)[-1]
    settings, problems = settings_in(image_settings(stage))
    if settings is None:
        return problems
    if stage.last("EXPOSE").split() != [str(settings.port)]:
        problems.append(f"EXPOSE {stage.last('EXPOSE')} is not PORT {settings.port}")
    if settings.host != "0.0.0.0":
        problems.append(f"HOST={settings.host}: a container must listen on every interface")
    uid = stage.last("USER").partition(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"USER {stage.last('USER')}: not a numeric non-root uid (runAsNonRoot needs one)")
    if stage.last("STOPSIGNAL") != "SIGTERM":
        problems.append(f"STOPSIGNAL {stage.last('STOPSIGNAL')}: the drain starts on SIGTERM")
    cmd = stage.last("CMD")
    if not cmd.startswith("[") or exec_form(cmd) != ["python", "-m", "app"]:
        problems.append(f"CMD {cmd}: not the exec form of python -m app (PID 1 must get the signal)")
    _, check = healthcheck(stage)
    if url_path(check) not in http_routes:
        problems.append(f"HEALTHCHECK asks for {url_path(check)}, not a route of the app")
    return problems


@pytest.fixture
def http_routes(app: Starlette) -> set[str]:
    return routes(app)


async def test_the_image_agrees_with_the_settings_and_the_app(http_routes: set[str]) -> None:
    assert image_problems(DOCKERFILE.read_text(), http_routes) == []
    assert image_settings(image())["MODEL_PROVIDER"] == "nova_sonic"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("EXPOSE 8080", "EXPOSE 8000", "EXPOSE 8000 is not PORT 8080"),
        ("PORT=8080", "PORT=80800", "PORT='80800' is not valid"),
        ("HOST=0.0.0.0", "HOST=127.0.0.1", "every interface"),
        ("MODEL_PROVIDER=nova_sonic", "MODEL_PROVDER=nova_sonic", "MODEL_PROVDER is not a setting"),
        ("USER 10001:10001", "USER 0", "non-root"),
        ("USER 10001:10001", "USER voice", "numeric"),
        ("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL", "SIGKILL"),
        ('CMD ["python", "-m", "app"]', "CMD python -m app", "exec form"),
        ("/ping'", "/healthz'", "/healthz, not a route"),
    ],
)
async def test_the_image_checks_catch(http_routes: set[str], old: str, new: str, problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    assert any(problem in found for found in image_problems(text.replace(old, new), http_routes))


def test_both_stages_use_one_python_and_the_image_has_no_dev_dependencies() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text())
    # The virtualenv is copied across, so both must have the same interpreter at the same path.
    assert {stage.base for stage in stages} == {"${PYTHON_IMAGE}"}
    assert "ARG PYTHON_IMAGE=python:3.13-slim" in DOCKERFILE.read_text().splitlines()
    runs = " ".join(args for stage in stages for args in stage.all("RUN"))
    assert "[dev]" not in runs
    assert "optional-dependencies" not in runs
    assert image().all("COPY")[0] == "--from=builder /opt/venv /opt/venv"


def test_the_image_has_the_tools_where_tools_dir_points() -> None:
    stage = image()
    assert Settings().tools_dir.as_posix() == "tools"
    assert "TOOLS_DIR" not in stage.env()
    assert f"tools ./{Settings().tools_dir.as_posix()}" in stage.all("COPY")


def test_dockerignore_keeps_secrets_and_local_state_out_and_what_is_copied_in() -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text())
    for private in (".env", ".env.production", ".git/config", ".venv/bin/python", "app/__pycache__/x.pyc"):
        assert ignored(private, patterns), private
    copied = [
        source
        for stage in dockerfile_stages(DOCKERFILE.read_text())
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert copied == ["pyproject.toml", "README.md", "app", "tools"]
    assert [source for source in copied if ignored(source, patterns)] == []
    assert all((ROOT / source).exists() for source in copied)


# Kubernetes ------------------------------------------------------------------------------


def one(objects: Objects, kind: str) -> dict[str, Any]:
    found = [body for (k, _), body in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod(objects: Objects) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]
    return spec


def container(objects: Objects) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod(objects)["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def effective_environment(objects: Objects, stage: Stage) -> dict[str, str]:
    """The app's environment in the pod: the image's, then the ConfigMap's, then env: entries."""
    environ = image_settings(stage)
    for source in container(objects).get("envFrom", []):
        if "configMapRef" in source:
            environ |= objects[("ConfigMap", source["configMapRef"]["name"])]["data"]
    environ |= {item["name"]: item["value"] for item in container(objects).get("env", []) if "value" in item}
    return environ


def prestop_seconds(spec: dict[str, Any]) -> float | None:
    hook = spec.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else None


def manifest_problems(objects: Objects, stage: Stage, http_routes: set[str]) -> list[str]:
    spec, main = pod(objects)["spec"], container(objects)
    settings, problems = settings_in(effective_environment(objects, stage))
    if settings is None:
        return problems
    ports = {port.get("name"): port["containerPort"] for port in main["ports"]}
    if list(ports.values()) != [settings.port]:
        problems.append(f"container ports {ports} are not PORT {settings.port}")

    def resolves(port: int | str) -> bool:
        return ports.get(port) == settings.port if isinstance(port, str) else port == settings.port

    for kind, wanted in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", None)):
        probe = main.get(kind, {}).get("httpGet")
        if probe is None:
            problems.append(f"no HTTP {kind}")
            continue
        if probe["path"] not in http_routes or (wanted and probe["path"] != wanted):
            problems.append(f"{kind} on {probe['path']}, not {wanted or 'a route of the app'}")
        if not resolves(probe["port"]):
            problems.append(f"{kind} on port {probe['port']}, not the app's")
    grace, prestop = spec.get("terminationGracePeriodSeconds", 30), prestop_seconds(main)
    if prestop is None:
        problems.append("no preStop sleep: clients still routed here in the first seconds would be refused")
    elif grace < prestop + settings.drain_timeout + SHUTDOWN_MARGIN:
        problems.append(
            f"terminationGracePeriodSeconds {grace} < preStop {prestop:g} s + DRAIN_TIMEOUT "
            f"{settings.drain_timeout:g} s + {SHUTDOWN_MARGIN} s"
        )
    security = spec.get("securityContext", {}) | main.get("securityContext", {})
    uid = int(stage.last("USER").partition(":")[0])
    if security.get("runAsNonRoot") is not True or security.get("runAsUser") != uid:
        problems.append(f"not runAsNonRoot with runAsUser {uid} (the image's USER)")
    mounts = {mount["mountPath"] for mount in main.get("volumeMounts", [])}
    if security.get("readOnlyRootFilesystem") and "/tmp" not in mounts:
        problems.append("a read-only root needs a writable /tmp (the tool workers' socket)")
    secrets = [source["secretRef"] for source in main.get("envFrom", []) if "secretRef" in source]
    if not secrets or any(secret.get("optional") for secret in secrets):
        problems.append("the Secret must be required: an optional one lets auth be off by accident")
    labels = pod(objects)["metadata"]["labels"]
    service = one(objects, "Service")["spec"]
    if service["selector"].items() - labels.items() or not all(
        resolves(port["targetPort"]) for port in service["ports"]
    ):
        problems.append("the Service does not select the pods or target the app's port")
    if one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() - labels.items():
        problems.append("the PodDisruptionBudget does not select the pods")
    target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", one(objects, "Deployment")["metadata"]["name"]):
        problems.append("the HorizontalPodAutoscaler does not scale the Deployment")
    scraped = pod(objects)["metadata"].get("annotations", {}).get("prometheus.io/port")
    if scraped is not None and int(scraped) not in ports.values():
        problems.append(f"prometheus.io/port {scraped} is not a container port")
    return problems


async def test_the_manifests_agree_with_the_image_the_settings_and_the_app(http_routes: set[str]) -> None:
    assert manifest_problems(manifests(), image(), http_routes) == []


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Objects], None]:
    def change(objects: Objects) -> None:
        target: Any = objects
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


_POD = (("Deployment", "voice-agent"), "spec", "template", "spec")
_MAIN = (*_POD, "containers", 0)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_set((*_POD, "terminationGracePeriodSeconds"), 30), "terminationGracePeriodSeconds 30 < preStop"),
        (_set((("ConfigMap", "voice-agent"), "data", "DRAIN_TIMEOUT"), "40"), "DRAIN_TIMEOUT 40 s"),
        (_set((*_MAIN, "lifecycle"), {}), "no preStop sleep"),
        (_set((*_MAIN, "readinessProbe", "httpGet", "path"), "/health"), "readinessProbe on /health"),
        (_set((*_MAIN, "livenessProbe", "httpGet", "path"), "/ready"), "livenessProbe on /ready"),
        (_set((*_MAIN, "startupProbe", "httpGet", "path"), "/healthz"), "startupProbe on /healthz"),
        (_set((*_MAIN, "ports", 0, "containerPort"), 8000), "container ports"),
        (_set((("ConfigMap", "voice-agent"), "data", "PORT"), "9000"), "container ports"),
        (_set((("ConfigMap", "voice-agent"), "data", "MAX_SESION"), "5"), "MAX_SESION is not a setting"),
        (_set((*_POD, "securityContext", "runAsUser"), 0), "runAsNonRoot"),
        (_set((*_MAIN, "volumeMounts"), []), "writable /tmp"),
        (_set((*_MAIN, "envFrom", 1, "secretRef", "optional"), True), "Secret must be required"),
        (_set((("Service", "voice-agent"), "spec", "ports", 0, "targetPort"), 80), "Service"),
    ],
)
async def test_the_manifest_checks_catch(
    http_routes: set[str], change: Callable[[Objects], None], problem: str
) -> None:
    objects = copy.deepcopy(manifests())
    change(objects)
    assert any(problem in found for found in manifest_problems(objects, image(), http_routes))


async def test_every_probe_and_the_health_check_get_200_from_the_app(app: Starlette) -> None:
    main = container(manifests())
    paths = {main[kind]["httpGet"]["path"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}
    paths.add(url_path(healthcheck(image())[1]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert {path: (await client.get(path)).status_code for path in sorted(paths)} == dict.fromkeys(
            sorted(paths), 200
        )
        # The page is mounted at /: a wrong path is a 404, not a page that passes a probe.
        assert (await client.get("/healthz")).status_code == 404


def test_kustomization_applies_every_manifest_but_the_custom_metrics_variant() -> None:
    listed = load_yaml(K8S_DIR / "kustomization.yaml")["resources"]
    present = [path.name for path in K8S_DIR.glob("*.yaml") if path.stem != "kustomization"]
    assert sorted(listed) == sorted(present)


def test_the_sessions_autoscaler_replaces_the_cpu_one_and_scales_before_pods_are_full() -> None:
    objects = manifests()
    variant = load_yaml(K8S_DIR / "custom-metrics" / "hpa-sessions.yaml")
    assert variant["metadata"]["name"] == one(objects, "HorizontalPodAutoscaler")["metadata"]["name"]
    pods = [metric["pods"] for metric in variant["spec"]["metrics"] if metric["type"] == "Pods"]
    assert [metric["metric"]["name"] for metric in pods] == [SESSIONS_METRIC]
    settings, problems = settings_in(effective_environment(objects, image()))
    assert settings is not None, problems
    assert 0 < float(pods[0]["target"]["averageValue"]) < settings.max_sessions
    # docs/deploy.md gives the prometheus-adapter rule that serves the metric under this name.
    assert f"seriesQuery: '{SESSIONS_METRIC}{{" in (ROOT / "docs" / "deploy.md").read_text()
