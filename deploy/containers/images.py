"""What the images are built from: the wheelhouse, and local stand-ins for the official base images.

Image builds are hermetic: the wheels of `requirements-runtime.lock` are downloaded on the
host, hash-checked (`.cache/wheels/`, in the build context), and installed offline in the
image; no certificate or secret goes into any image.

Where the official images (python, apache/kafka, postgres, axllent/mailpit, keycloak) cannot be
pulled, stand-ins are built locally with the same interface (paths, variables, users):
a Debian bookworm root made by `debootstrap` (kept as a tarball in `.cache/containers/`)
is imported as `cadre-local/debian:bookworm`; on it, Debian's Python 3.11, Debian's Java
with the Kafka jars the project already fetches with Maven, Debian's PostgreSQL 15,
Mailpit built from its Go module, and Debian's Java with Keycloak's server distribution
(also from Maven). `deploy/compose/standins.yaml` points the compose file
at them; the same Dockerfile and compose file serve both.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from deploy.containers.engine import MAILPIT_VERSION, Engine, mailpit_binary, temporary_dir
from deploy.local.kafka import KAFKA_VERSION, ensure_jars
from deploy.local.keycloak import KEYCLOAK_VERSION, ensure_distribution
from deploy.paths import REPO, cache_root

WHEELS: Final = REPO / ".cache" / "wheels"
"""The wheelhouse the service Dockerfile copies (a fixed place in the build context)."""
RUNTIME_LOCK: Final = REPO / "requirements-runtime.lock"
STANDIN_DIR: Final = REPO / "deploy" / "docker" / "standins"
DEBIAN_SUITE: Final = "bookworm"
DEBIAN_IMAGE: Final = f"cadre-local/debian:{DEBIAN_SUITE}"
STANDINS: Final = {
    "python": "cadre-local/python:3.11-bookworm",
    "kafka": f"cadre-local/kafka:{KAFKA_VERSION}",
    "postgres": "cadre-local/postgres:15",
    "mailpit": f"cadre-local/mailpit:{MAILPIT_VERSION}",
    "keycloak": f"cadre-local/keycloak:{KEYCLOAK_VERSION}",
}
"""Stand-in images by the Dockerfile in deploy/docker/standins/ that builds them."""
_SLIM: Final = """\
# As in Debian's slim images: no manual pages, documentation or translations (copyright notices stay).
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
"""


def _run(args: list[str], what: str, *, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)  # noqa: S603 - fixed tools
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        msg = f"{what} failed (exit code {done.returncode}): {output}"
        raise RuntimeError(msg)


def wheels() -> Path:
    """The runtime lock's wheels in `.cache/wheels/`, downloaded (hash-checked) when the lock changed."""
    want = hashlib.sha256(RUNTIME_LOCK.read_bytes()).hexdigest()
    stamp = WHEELS / ".lock-sha256"
    if stamp.exists() and stamp.read_text().strip() == want:
        return WHEELS
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--require-hashes",
         "--only-binary=:all:", "--no-deps", "--dest", str(WHEELS), "-r", str(RUNTIME_LOCK)],
        "downloading the runtime lock's wheels",
    )  # fmt: skip
    stamp.write_text(want + "\n")
    return WHEELS


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (debootstrap fetches from it)."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if not source.exists():
            continue
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 1 and "security" not in words[1]:
                return words[-3] if words[1].startswith("[") else words[1]
    return "http://deb.debian.org/debian"


def debian_rootfs() -> Path:
    """A minimal Debian root as a tarball (`.cache/containers/debian-<suite>.tar`), made once with debootstrap."""
    tarball = cache_root() / "containers" / f"debian-{DEBIAN_SUITE}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = temporary_dir("debootstrap-")
    try:
        root = work / "root"
        _run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(root), debian_mirror()], "debootstrap")
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():  # the machine's suites (updates, security), not only the release
            shutil.copy(sources, root / "etc/apt/sources.list.d/debian.sources")
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/dpkg/dpkg.cfg.d/slim").write_text(_SLIM)
        for folder in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/locale"):
            for entry in (root / folder).glob("*"):
                if entry.is_dir() and entry.name != "partial":
                    shutil.rmtree(entry)
                elif entry.is_file():
                    entry.unlink()
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "packing the Debian root")
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def build_standins(engine: Engine, names: list[str] | None = None) -> None:
    """Build (or find up to date: the builder's cache) the stand-in images `names` (default: all)."""
    if engine.docker("image", "inspect", DEBIAN_IMAGE).returncode != 0:
        engine.check("import", str(debian_rootfs()), DEBIAN_IMAGE)
    env = {**engine.env(), "DOCKER_BUILDKIT": "0"}  # the classic builder: no buildx needed
    for name in names or list(STANDINS):
        context = temporary_dir(f"standin-{name}-")
        try:
            for script in STANDIN_DIR.iterdir():
                if not script.name.endswith(".Dockerfile"):
                    shutil.copy2(script, context / script.name)
            if name == "kafka":
                shutil.copytree(_kafka_classpath(), context / "lib")
            if name == "mailpit":
                shutil.copy2(mailpit_binary(), context / "mailpit")
            if name == "keycloak":  # the distribution without what a local server left in it
                shutil.copytree(ensure_distribution(), context / "keycloak", ignore=shutil.ignore_patterns("data"))
            args = ["docker", "build", "--quiet", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}", "-t", STANDINS[name]]
            _run([*args, "-f", str(STANDIN_DIR / f"{name}.Dockerfile"), str(context)], f"building {name}", env=env)
        finally:
            shutil.rmtree(context, ignore_errors=True)


def _kafka_classpath() -> Path:
    lib = ensure_jars()
    if not any(lib.glob("kafka-tools-[0-9]*.jar")):
        msg = f"{lib} has no kafka-tools jar (the image's health check needs it): delete {lib.parent} to fetch again"
        raise RuntimeError(msg)
    return lib


def image_sizes(engine: Engine, images: list[str]) -> dict[str, int]:
    """Each image's size in bytes, as the engine reports it."""
    sizes = {}
    for image in images:
        sizes[image] = int(engine.check("image", "inspect", "--format", "{{.Size}}", image).strip())
    return sizes
