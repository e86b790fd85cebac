"""The service image copies every first-party module its code imports (a missing one fails only in containers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from deploy.paths import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
FIRST_PARTY = ("contracts", "runtime", "exchange", "services", "deploy")


def copied() -> set[Path]:
    """The repository paths the final stage copies into /app (files, or folders copied whole)."""
    text = DOCKERFILE.read_text()
    final = text[text.rindex("\nFROM ") :]
    paths: set[Path] = set()
    for line in final.splitlines():
        match = re.match(r"COPY (?:--from=\S+ )?(.+)", line)
        if not match:
            continue
        *sources, _target = match.group(1).split()
        paths.update(REPO / source.removeprefix("/src/").rstrip("/") for source in sources)
    return paths


def in_image(path: Path, paths: set[Path]) -> bool:
    return any(path == p or p in path.parents for p in paths)


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in FIRST_PARTY}


def entry_points() -> list[str]:
    """What the containers run: every service (`python -m services.<name>`) and the compose jobs."""
    services = sorted(p.parent.name for p in (REPO / "services").glob("*/__main__.py"))
    compose = (REPO / "deploy" / "compose" / "compose.yaml").read_text()
    jobs = set(re.findall(r'entrypoint: \["python", "-m", "([\w.]+)"', compose))
    return [f"services.{name}" for name in services] + sorted(jobs)


def reached(names: list[str]) -> dict[Path, str]:
    """Every first-party file those modules import, at any depth (with who imports it first)."""
    seen: dict[Path, str] = {}
    todo = [(name, "entry point") for name in names]
    while todo:
        name, by = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            target = module_file(".".join(parts[:depth]))
            if target is None or target in seen:
                continue
            seen[target] = by
            for main in [target.parent / "__main__.py"] if target.name == "__init__.py" and depth == len(parts) else []:
                if main.exists() and main not in seen:
                    seen[main] = by
                    todo += [(n, str(main.relative_to(REPO))) for n in imports(main)]
            todo += [(n, str(target.relative_to(REPO))) for n in imports(target)]
    return seen


def test_every_module_the_containers_run_is_in_the_image() -> None:
    entries = entry_points()
    assert "services.registry" in entries  # the parse found them
    assert "deploy.local.keycloak" in entries
    paths = copied()
    missing = [
        f"{file.relative_to(REPO)} (imported by {by})"
        for file, by in reached(entries).items()
        if "tests" not in file.relative_to(REPO).parts and not in_image(file, paths)
    ]
    assert not missing, sorted(missing)
