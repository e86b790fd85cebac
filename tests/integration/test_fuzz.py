"""Schemathesis against every service's OpenAPI document, the services running as processes on the real stack.

Every check of schemathesis (`--checks all`, each with its default expectations but for the few
rules a schema cannot state, named one by one in schemathesis.toml): no server error, no answer
that breaks its schema, no status code, content type or header the document does not declare,
invalid data refused, valid data accepted, the token required, `Allow` on a 405. Every phase runs
(coverage, fuzzing, stateful sequences along the links schemathesis infers; coverage as the root
organizer only, see `PHASES`), with a fixed seed and
a bounded number of examples per operation, so a run is repeatable; the demo organization gives
the operations something to find. Each service is fuzzed as the root organizer (whose token reaches
all of it), as a county's organizer and as a county's viewer (the scope and role rules in every
operation). A failure prints
schemathesis's own report (with the curl command that reproduces it).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.envelope import Actor, Role
from deploy.local import stack as local_stack
from runtime import clock
from runtime.auth import issue_token
from services.registry import demo
from tests.infra import Infra

SEED = 20261127
EXAMPLES = 8
"""Examples per operation and phase: the whole file took 231 s here (21 runs, 7 December 2026)."""
DEMO_CADRES = 12
CONFIG = Path(__file__).with_name("schemathesis.toml")
ACTORS = ("root-organizer", "county-organizer", "county-viewer")
"""Who the fuzzer acts as: the root organizer reaches everything; a county's organizer and viewer meet
the scope and role rules (404 outside the subtree, 403 for a viewer's commands) in every operation."""
PHASES = {
    "root-organizer": "examples,coverage,fuzzing,stateful",
    "county-organizer": "examples,fuzzing,stateful",
    "county-viewer": "examples,fuzzing,stateful",
}
"""The coverage phase (every boundary of every parameter, the longest) once per service, as the root
organizer whose token reaches every operation; a county's organizer and viewer meet the scope and role
rules through the fuzzing and stateful phases, which reach every operation too."""


@pytest.fixture(scope="module")
def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[local_stack.Stack, dict[str, str]]]:
    """Every service as a process, with the demo organization loaded; and a token of each actor fuzzed as."""
    workdir = tmp_path_factory.mktemp("fuzz")
    namespace = f"fuzz{os.getpid()}."
    env = {
        "RATE_LIMIT_WRITES_BURST": "100000",  # the fuzzer sends thousands of commands: 429 is not what is tried
        "RATE_LIMIT_EXPENSIVE_BURST": "100000",
        "CHECKPOINT_INTERVAL_SECONDS": "3600",
    }
    with local_stack.run_stack(
        workdir, kafka=infra.kafka_bootstrap, postgres=infra.postgres_dsn, namespace=namespace, env=env
    ) as stack:
        asyncio.run(local_stack.load_demo(stack, cadres=DEMO_CADRES))
        org = demo.plan(7, cadres=DEMO_CADRES)
        county = next(p for p in demo.people(org) if p.user_id == "organizer.county").unit.path
        places = {"root-organizer": (org.root.path, Role.ORGANIZER), "county-organizer": (county, Role.ORGANIZER)}
        places["county-viewer"] = (county, Role.VIEWER)
        tokens = {
            name: issue_token(stack.secret, Actor(user=f"fuzz.{name}", org_path=path, role=role))
            for name, (path, role) in places.items()
        }
        yield stack, tokens


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("service", local_stack.SERVICES)
def test_every_operation_answers_what_its_document_says(
    platform: tuple[local_stack.Stack, dict[str, str]], service: str, actor: str, tmp_path: Path
) -> None:
    stack, tokens = platform
    token = tokens[actor]
    url = stack.services[service].url
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{url}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        "--seed", str(SEED),
        "--max-examples", str(EXAMPLES),
        "--phases", PHASES[actor],
        "--workers", "1",  # hypothesis's threads trip over each other (an AST recursion error) with more
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - our interpreter, a dependency's module
        command, capture_output=True, text=True, timeout=600, check=False, env=_env(), cwd=tmp_path
    )  # its cache (.schemathesis/) lands beside the report, not in the checkout
    report = f"{service} as {actor}:\n{done.stdout[-12000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, report
    counts = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert counts, report
    assert int(counts[1]) > 0, report  # something was tried
    assert counts[1] == counts[2], report
    print(f"{service} as {actor}: {counts[1]} cases, all passed (seed {SEED}, {EXAMPLES} examples)")  # noqa: T201


def _env() -> dict[str, str]:
    # X-Occurred-At (schemathesis.toml): a day back by the platform's clock, inside the backdating window.
    occurred_at = (clock.now() - timedelta(days=1)).isoformat()
    return {
        **os.environ,
        "COLUMNS": "200",
        "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks",
        "PYTHONPATH": str(local_stack.REPO),  # the hooks' module, from the checkout (schemathesis runs elsewhere)
        "FUZZ_OCCURRED_AT": occurred_at,
    }
