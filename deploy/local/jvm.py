"""Java programs from Maven Central: their class paths, fetched once, and the `java` that runs them.

The Kafka broker, MirrorMaker 2 and Strimzi's CRD generator all come this way (and
Keycloak's server distribution, one archive unpacked: `ensure_distribution`): a
small pom naming the program's artifacts is written into a git-ignored cache
(`.cache/<name>/<version>/`, or `$CADRE_CACHE_DIR/<name>/<version>/`), and
`mvn dependency:copy-dependencies` copies the whole runtime class path into its
`lib/`. A marker written after a complete copy makes later calls return at once;
a file lock makes concurrent callers wait for the one fetch.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from deploy.paths import cache_root

_MARKER = "complete"

SLF4J_TO_LOG4J = (
    "org.slf4j:slf4j-api:2.0.17",
    "org.apache.logging.log4j:log4j-slf4j2-impl:2.25.3",
    "org.apache.logging.log4j:log4j-core:2.25.3",
)
"""Kafka 4 logs through SLF4J 2 to Log4j 2; without slf4j-api 2.x pinned Maven picks 1.7 and nothing binds."""


@dataclass(frozen=True)
class Classpath:
    """A Java program's runtime class path: the artifacts to resolve, and where they are cached."""

    name: str
    """Cache folder: `.cache/<name>/<version>/lib`."""
    version: str
    artifacts: tuple[str, ...]
    """`group:artifact:version` of each direct dependency; Maven adds the transitive ones."""
    marker: str
    """The file name prefix of a jar that a complete fetch contains (e.g. `kafka_2.13-`)."""

    def pom(self) -> str:
        """The pom whose runtime dependencies are this class path."""
        entries = []
        for coordinates in self.artifacts:
            group, artifact, version = (escape(part) for part in coordinates.split(":"))
            entries.append(
                f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
                f"<version>{version}</version></dependency>"
            )
        dependencies = "\n".join(entries)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<!-- The class path of {escape(self.name)} {escape(self.version)}, written by deploy/local/jvm.py. -->\n"
            '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
            "  <modelVersion>4.0.0</modelVersion>\n"
            "  <groupId>local.cadre-pool</groupId>\n"
            f"  <artifactId>{escape(self.name)}-classpath</artifactId>\n"
            "  <version>1</version>\n"
            "  <packaging>pom</packaging>\n"
            f"  <dependencies>\n{dependencies}\n  </dependencies>\n"
            "</project>\n"
        )


def cache_dir(classpath: Classpath) -> Path:
    """Where `classpath` is kept: `<cache root>/<name>/<version>/`."""
    return cache_root() / classpath.name / classpath.version


def java_executable() -> str:
    """The `java` to run with: `$JAVA_HOME/bin/java`, else `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        msg = "java not found: Kafka needs Java 17 or newer on PATH (or in $JAVA_HOME/bin)"
        raise RuntimeError(msg)
    return found


def _fetched(target: Path, classpath: Classpath) -> bool:
    return (target / _MARKER).is_file() and any((target / "lib").glob(f"{classpath.marker}*.jar"))


def ensure_classpath(classpath: Classpath) -> Path:
    """The directory of `classpath`'s jars, fetched with Maven on the first call."""
    target = cache_dir(classpath)
    lib = target / "lib"
    if _fetched(target, classpath):
        return lib
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _fetched(target, classpath):  # another process may have fetched them while we waited
            _fetch(classpath, target)
    return lib


def _fetch(classpath: Classpath, target: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = f"mvn not found: Apache Maven fetches the jars of {classpath.name} from Maven Central on first use"
        raise RuntimeError(msg)
    (target / _MARKER).unlink(missing_ok=True)
    pom = target / "pom.xml"
    pom.write_text(classpath.pom())
    staging = target / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(  # noqa: S603 - our pom, fixed arguments
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not any(staging.glob(f"{classpath.marker}*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        msg = (
            f"mvn failed (exit code {result.returncode}) to fetch {classpath.name} {classpath.version}: "
            f"{output or '(no output)'}"
        )
        raise RuntimeError(msg)
    lib = target / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    jars = sum(1 for _ in lib.glob("*.jar"))
    (target / _MARKER).write_text(f"{jars} jars of {classpath.name} {classpath.version}\n")


def ensure_distribution(name: str, version: str, coordinates: str, *, top: str) -> Path:
    """A program's distribution archive (`group:artifact:version:zip`), unpacked once into `.../<name>/<version>/dist`.

    `top` is the archive's one top folder (its contents become `dist/`). Fetched with
    `mvn dependency:copy` under the same lock and marker as a class path; executable
    bits survive the unpacking.
    """
    target = cache_root() / name / version
    dist = target / "dist"

    def done() -> bool:
        return (target / _MARKER).is_file() and dist.is_dir()

    if done():
        return dist
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done():
            _fetch_distribution(name, version, coordinates, top, target)
    return dist


def _fetch_distribution(name: str, version: str, coordinates: str, top: str, target: Path) -> None:
    (target / _MARKER).unlink(missing_ok=True)
    downloads, staging = target / "download", target / "dist.partial"
    for folder in (downloads, staging):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    try:
        _mvn(["dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={downloads}"], f"{name} {version}")
        _unpack(list(downloads.iterdir()), staging)
        (staging / top).rename(target / "dist.unpacked")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(downloads, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    dist = target / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    (target / "dist.unpacked").rename(dist)
    (target / _MARKER).write_text(f"{name} {version}\n")


def _unpack(archives: list[Path], into: Path) -> None:
    """Unpack the one archive Maven copied, keeping the executable bits (zipfile drops them)."""
    if len(archives) != 1:
        msg = f"mvn copied {len(archives)} files, expected one archive"
        raise RuntimeError(msg)
    with zipfile.ZipFile(archives[0]) as bundle:
        bundle.extractall(into)
        for info in bundle.infolist():
            mode = info.external_attr >> 16
            if mode & 0o111:
                (into / info.filename).chmod(mode & 0o777)


def _mvn(arguments: list[str], what: str) -> None:
    """Run `mvn -q -B <arguments>`; `RuntimeError` naming `what` and the end of its output when it fails."""
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = f"mvn not found: Apache Maven fetches {what} from Maven Central on first use"
        raise RuntimeError(msg)
    result = subprocess.run([mvn, "-q", "-B", *arguments], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        msg = f"mvn failed (exit code {result.returncode}) to fetch {what}: {output or '(no output)'}"
        raise RuntimeError(msg)
