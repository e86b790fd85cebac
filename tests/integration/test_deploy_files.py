"""The container, compose and Kubernetes files, checked as far as a machine without Docker or a cluster can.

Each check is also shown to catch what it is there for: a broken copy of each file fails.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import mirroring, validate
from deploy.local.keycloak import KEYCLOAK_VERSION, REALM
from deploy.local.stack import SERVICES
from deploy.paths import REPO


def test_the_dockerfile_passes_hadolint_and_our_rules() -> None:
    for result in (validate.hadolint(), validate.dockerfile_rules()):
        assert result.ok, result.output


def test_a_careless_dockerfile_fails_them(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python:latest\n"
        "RUN pip install -r requirements.txt\n"
        "COPY . /app\n"
        'CMD ["python", "-m", "services.registry"]\n'
    )
    linted = validate.hadolint(careless)
    assert not linted.ok
    assert "DL3007" in linted.output  # the latest tag
    ours = validate.dockerfile_rules(careless)
    assert not ours.ok
    for problem in ("not multi-stage", "no non-root USER", "no HEALTHCHECK", "hash-checked", "not pinned"):
        assert problem in ours.output


def test_the_compose_file_is_valid() -> None:
    result = validate.compose()
    assert result.ok, result.output


def compose_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(validate.COMPOSE_FILE.read_text())
    return document


def test_every_image_the_compose_file_builds_or_pulls_has_a_local_stand_in() -> None:
    # Where no registry can be reached (here, and in the containers' check), the stand-ins replace every
    # image: a service without one tries to pull its base image and the whole build fails.
    services = compose_document()["services"]
    standins = yaml.safe_load((validate.COMPOSE_FILE.parent / "standins.yaml").read_text())["services"]
    for name, service in services.items():
        if "build" in service:
            assert standins.get(name, {}).get("build", {}).get("args", {}).get("PYTHON_IMAGE"), name
        else:
            assert standins.get(name, {}).get("image", "").startswith("cadre-local/"), name


def test_the_compose_file_brings_up_everything_in_order() -> None:
    document = compose_document()
    services = document["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:15")
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["kafka"] == {"condition": "service_healthy"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["topics"] == {"condition": "service_completed_successfully"}
        assert services[name]["environment"]["DATABASE_URL"].endswith(f"/cadre_{name}")
    init = (REPO / "deploy" / "compose" / "postgres-init" / "01-databases.sql").read_text()
    databases = sorted(f"cadre_{name}" for name in (*SERVICES, "keycloak"))
    assert sorted(re.findall(r"CREATE DATABASE (\w+);", init)) == databases
    assert services["topics"]["entrypoint"] == ["python", "-m", "deploy.local", "topics"]
    assert services["demo"]["profiles"] == ["demo"]
    assert set(document["volumes"]) == {"kafka-data", "postgres-data", "keycloak-realm"}


def test_the_console_signs_people_in_at_the_compose_files_keycloak() -> None:
    services = compose_document()["services"]
    console, keycloak = services["console"], services["keycloak"]
    assert keycloak["image"] == f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}"  # the local provider's version
    environment = console["environment"]
    assert environment["SESSION_KEY"].startswith("${SESSION_KEY:?")  # required: no development key
    assert keycloak["environment"]["KC_BOOTSTRAP_ADMIN_PASSWORD"].startswith("${KEYCLOAK_ADMIN_PASSWORD:?")
    # Browsers reach Keycloak on its loopback port; the console and the services, inside the network.
    assert environment["OIDC_ISSUER"] == "http://127.0.0.1:${KEYCLOAK_PORT:-8180}/realms/" + REALM
    assert keycloak["environment"]["KC_HOSTNAME"] + f"/realms/{REALM}" == environment["OIDC_ISSUER"]
    assert environment["OIDC_DISCOVERY_URL"].startswith("http://keycloak:8080/realms/")
    for name in SERVICES:
        assert services[name]["environment"]["OIDC_ISSUER"] == environment["OIDC_ISSUER"]
        assert services[name]["environment"]["OIDC_JWKS_URL"].startswith("http://keycloak:8080/realms/")
    for name in ("registry", "training", "assessment", "notify", "audit"):
        assert environment[f"{name.upper()}_URL"] == f"http://{name}:8000"
        assert console["depends_on"][name] == {"condition": "service_healthy"}
    assert console["read_only"] is True
    assert keycloak["depends_on"]["realm"] == {"condition": "service_completed_successfully"}
    assert services["realm"]["entrypoint"] == ["python", "-m", "deploy.local.keycloak", "realm"]
    assert "${REALM_PEOPLE:-none}" in services["realm"]["command"]  # no known password unless asked for


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (lambda d: d["services"]["registry"]["depends_on"].update({"zookeeper": {}}), "unknown service 'zookeeper'"),
        (lambda d: d["services"]["kafka"].update(image="apache/kafka:latest"), "not pinned"),
        (lambda d: d.pop("volumes"), "named volume 'kafka-data' is not declared"),
        (
            lambda d: d["services"]["training"]["environment"].update(KAFKA_BOOTSRAP_SERVERS="kafka:9092"),
            "KAFKA_BOOTSRAP_SERVERS is not a setting",
        ),
        (lambda d: d["services"]["mail"].pop("healthcheck"), "mail has no healthcheck"),
        (lambda d: d["services"].pop("assessment"), "service assessment is missing"),
        (lambda d: d["services"].pop("console"), "service console is missing"),
        (lambda d: d["services"]["console"]["environment"].update(OIDC_ISUER="x"), "OIDC_ISUER is not a setting"),
        (lambda d: d["services"]["notify"].update(ports=["8004:8000"]), "published beyond loopback"),
    ],
)
def test_a_broken_compose_file_is_caught(breakage: Any, problem: str) -> None:
    document = copy.deepcopy(compose_document())
    breakage(document)
    problems = validate.compose_problems(document)
    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize("directory", validate.K8S_DIRS, ids=lambda d: d.name)
def test_the_kubernetes_manifests_pass_kubeconform(directory: Path) -> None:
    result = validate.kubeconform(directory)
    assert result.ok, result.output
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.output


def test_kubeconform_catches_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(validate.K8S_DIRS[0], broken)
    deployment = (broken / "training.yaml").read_text()
    (broken / "training.yaml").write_text(deployment.replace("replicas: 2", "replica: 2", 1))
    result = validate.kubeconform(broken)
    assert not result.ok
    assert "replica" in result.output


def kubeconform_edited(tmp_path: Path, manifest: str, edit: Callable[[str], str]) -> validate.Result:
    """kubeconform over a copy of the example overlay (and the base it builds on) with `manifest` edited."""
    shutil.copytree(validate.K8S_DIRS[0], tmp_path / "base")
    overlay = tmp_path / "overlays" / "example"
    shutil.copytree(validate.K8S_DIRS[1], overlay)
    (overlay / manifest).write_text(edit((overlay / manifest).read_text()))
    return validate.kubeconform(overlay)


def test_kubeconform_checks_mirrormaker2_against_strimzis_crd(tmp_path: Path) -> None:
    result = kubeconform_edited(
        tmp_path,
        "mirrormaker2.yaml",
        lambda text: text.replace("topicsPattern", "topicsPatern").replace("tasksMax: 1", "tasksMax: one"),
    )
    assert not result.ok
    assert "KafkaMirrorMaker2 cadre-mirror is invalid" in result.output
    assert "'topicsPatern' not allowed" in result.output
    assert "tasksMax': got string, want integer" in result.output


def test_the_mirrormaker_examples_are_rendered_by_the_code_the_launcher_uses() -> None:
    assert mirroring.main(["--check"]) == 0, "run `python -m deploy.mirroring`"
    objects = rendered(validate.K8S_DIRS[1])
    (mirror,) = [obj for obj in objects if obj["kind"] == "KafkaMirrorMaker2"]
    assert mirror["metadata"]["namespace"] == "cadre-pool"
    assert mirror["spec"] == yaml.safe_load(mirroring.K8S_MANIFEST.read_text())["spec"]
    (shared,) = [obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "cadre-shared"]
    assert mirror["spec"]["connectCluster"] == shared["data"]["DEPLOYMENT_ID"]  # next to this deployment's Kafka


def test_the_mirror_compose_file_links_two_compose_projects() -> None:
    assert validate.compose(validate.MIRROR_COMPOSE_FILE, services=()).ok
    document = yaml.safe_load(validate.MIRROR_COMPOSE_FILE.read_text())
    service = document["services"]["mirrormaker"]
    assert service["image"] == compose_document()["services"]["kafka"]["image"]  # the same Kafka distribution
    assert "./mirrormaker/mm2.properties:/etc/mirrormaker/mm2.properties:ro" in service["volumes"]
    assert service["command"][-1] == "/etc/mirrormaker/mm2.properties"
    projects = set(mirroring.COMPOSE_TOPOLOGY.clusters)
    assert {network["name"] for network in document["networks"].values()} == {f"{p}_default" for p in projects}
    kafka = compose_document()["services"]["kafka"]
    # each project's Kafka advertises <DEPLOYMENT_ID>-kafka, the name the properties use
    assert kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://${DEPLOYMENT_ID:-compose}-kafka:9092"
    assert kafka["networks"]["default"]["aliases"] == ["${DEPLOYMENT_ID:-compose}-kafka"]
    assert mirroring.COMPOSE_TOPOLOGY.clusters == {p: f"{p}-kafka:9092" for p in projects}


def rendered(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(validate.kustomize(directory)) if doc]


def test_every_service_is_deployed_with_probes_limits_and_a_disruption_budget() -> None:
    objects = rendered(validate.K8S_DIRS[1])
    by_kind: dict[str, dict[str, Any]] = {}
    for obj in objects:
        by_kind[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    shared = by_kind["ConfigMap/cadre-shared"]["data"]
    assert shared["KAFKA_BOOTSTRAP_SERVERS"].endswith(".kafka.svc:9092")  # the overlay points at Strimzi
    for name in (*SERVICES, "console"):
        deployment = by_kind[f"Deployment/{name}"]
        assert deployment["metadata"]["namespace"] == "cadre-pool"
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"].startswith(f"registry.example.org/cadre-pool/{name}:")
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert {"requests", "limits"} <= set(container["resources"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        refs = [source.get("secretRef", source.get("configMapRef"))["name"] for source in container["envFrom"]]
        assert refs == ["cadre-shared", f"cadre-{name}", f"cadre-{name}"]
        assert by_kind[f"PodDisruptionBudget/{name}"]["spec"]["minAvailable"] == 1
        assert by_kind[f"Service/{name}"]["spec"]["ports"][0]["targetPort"] == "http"
        config = by_kind[f"ConfigMap/cadre-{name}"]["data"]
        # The console reads what of cadre-shared it needs (HTTP_*, LOG_*, OIDC_ISSUER) and ignores the rest.
        assert validate.unknown_settings(name, config if name == "console" else {**shared, **config}) == []
    console = by_kind["ConfigMap/cadre-console"]["data"]
    assert {console[f"{name.upper()}_URL"] for name in ("registry", "training", "assessment", "notify", "audit")} == {
        f"http://{name}" for name in ("registry", "training", "assessment", "notify", "audit")
    }
    assert shared["OIDC_ISSUER"].startswith("https://")


def test_the_runtime_lock_pins_what_the_dev_lock_pins() -> None:
    runtime = _pins(REPO / "requirements-runtime.lock")
    dev = _pins(REPO / "requirements.lock")
    assert runtime, "empty runtime lock"
    for package, (version, hashes) in runtime.items():
        assert package in dev, f"{package} is in the image but not in the tested environment"
        assert dev[package] == (version, hashes), f"{package} differs between the locks"
    for test_only in ("pytest", "mypy", "ruff", "testcontainers", "matplotlib"):
        assert test_only not in runtime


def _pins(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", lock.read_text()):
        head = re.match(r"([a-z0-9_.-]+)==([^\s\\]+)", block)
        if head:
            pins[head.group(1)] = (head.group(2), frozenset(re.findall(r"--hash=sha256:([0-9a-f]+)", block)))
    return pins


def test_kubeconform_checks_the_postgres_backups_against_cloudnativepgs_crds(tmp_path: Path) -> None:
    result = kubeconform_edited(
        tmp_path,
        "postgres.yaml",
        lambda text: text.replace("retentionPolicy: 14d", "retentionPolicy: 14d\n    retention: forever", 1),
    )
    assert not result.ok
    assert "Cluster cadre-pg is invalid" in result.output
    assert "'retention' not allowed" in result.output
    # Both databases are backed up on a schedule: the services' and Keycloak's.
    manifest = (validate.K8S_DIRS[1] / "postgres.yaml").read_text()
    docs = [doc for doc in yaml.safe_load_all(manifest) if doc]
    scheduled = {doc["spec"]["cluster"]["name"] for doc in docs if doc["kind"] == "ScheduledBackup"}
    archived = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Cluster" and doc["spec"]["backup"]}
    assert scheduled == archived == {"cadre-pg", "keycloak-pg"}
