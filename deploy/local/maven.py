"""Artifacts from Maven Central through `mvn`, fetched once into a git-ignored cache.

Kafka's class path and Keycloak's server distribution both come this way: the first
call runs `mvn` into a staging directory that is renamed into place only when
complete; a marker file written after that makes later calls return at once, and a
file lock makes a concurrent caller (another process or thread) wait for the fetch
instead of running `mvn` into the same directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
_MARKER = "complete"


def cache_root() -> Path:
    """`<repo>/.cache`, or `$CADRE_CACHE_DIR` when set."""
    override = os.environ.get("CADRE_CACHE_DIR")
    return Path(override) if override else _REPO / ".cache"


def cached(target: Path, fill: Callable[[Path], str], *, content: str = "lib") -> Path:
    """`target/<content>`, made once by `fill(staging)`; `fill` returns what the marker should say.

    `fill` writes into an empty staging directory and raises `RuntimeError` when it
    cannot; the staging directory becomes `target/<content>` only after it returned.
    """
    done = target / content
    if (target / _MARKER).is_file() and done.is_dir():
        return done
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _MARKER).is_file() and done.is_dir():  # another process fetched it while we waited
            return done
        (target / _MARKER).unlink(missing_ok=True)
        staging = target / f"{content}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            note = fill(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(done, ignore_errors=True)
        staging.rename(done)
        (target / _MARKER).write_text(note + "\n")
    return done


def mvn(arguments: list[str], *, what: str) -> None:
    """Run `mvn -q -B <arguments>`; `RuntimeError` naming `what` and the end of its output when it fails."""
    executable = shutil.which("mvn")
    if executable is None:
        msg = f"mvn not found: Apache Maven fetches {what} from Maven Central on first use"
        raise RuntimeError(msg)
    result = subprocess.run(  # noqa: S603 - fixed arguments of ours
        [executable, "-q", "-B", *arguments], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        msg = f"mvn failed (exit code {result.returncode}) to fetch {what}: {output or '(no output)'}"
        raise RuntimeError(msg)


def copy_dependencies(pom: Path, into: Path, *, what: str) -> None:
    """Copy the runtime dependencies of `pom` (its whole class path) into `into`."""
    mvn(
        ["-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={into}", "-DincludeScope=runtime"],
        what=what,
    )


def copy_artifact(coordinates: str, into: Path, *, what: str) -> Path:
    """Copy one artifact (`group:artifact:version[:type[:classifier]]`) into `into`; return its file."""
    mvn(
        ["dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={into}", "-Dmdep.useBaseVersion=true"],
        what=what,
    )
    files = [path for path in into.iterdir() if path.is_file()]
    if len(files) != 1:
        msg = f"mvn copied {len(files)} files for {coordinates}, expected one"
        raise RuntimeError(msg)
    return files[0]
