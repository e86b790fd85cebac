"""`./dev up` (python -m deploy.local up) reaches "running" with its demo loaded, whatever the hour."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.local.ports import free_port
from deploy.local.stack import REPO
from runtime import clock
from tests.infra import Infra

pytestmark = pytest.mark.dates("year-end")
"""At the real time and in the year's last seconds: each demo's own test loads it at every awkward instant
(tests/integration/test_*demo.py), so `./dev up` is tried at the instant where the most turns (its year)."""

READY = "Press Ctrl-C to stop."


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Everything the process printed until `marker` (or until it exited, or `timeout`)."""
    lines: list[str] = []
    seen = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                seen.set()
                return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not seen.is_set() and process.poll() is None and time.monotonic() < deadline:
        seen.wait(0.5)
    reader.join(timeout=2)
    return "".join(lines)


def up(infra: Infra, namespace: str, workdir: Path, port: int, *extra: str, **env_extra: str) -> subprocess.Popen[str]:
    """`./dev up` on the suite's Kafka and PostgreSQL (its own topics and databases), the console on `port`."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.postgres_dsn,
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
        **env_extra,
    }
    env.pop("SMTP_HOST", None)
    command = [sys.executable, "-m", "deploy.local", "up", "--workdir", str(workdir), "--cadres", "40"]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, "--namespace", f"{namespace}.", "--port", str(port), *extra],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def test_up_is_running_with_its_demo_at_any_hour(infra: Infra, namespace: str, tmp_path: Path, keycloak: str) -> None:
    # At the test's instant: the awkward ones too (00:30 in the organization, the year's last seconds, ...).
    # The session's Keycloak stands in for the one ./dev up would start (that one: the test below).
    at = clock.now().strftime("%Y-%m-%dT%H:%M:%S%z")
    port = free_port()
    process = up(infra, namespace, tmp_path / "stack", port, "--at", at, OIDC_ISSUER=keycloak)
    try:
        output = _read_until(process, READY, timeout=240)
        assert READY in output, output[-5000:]
    finally:
        code = stop(process)
    assert code == 0
    assert f"The reserve cadre platform: http://127.0.0.1:{port}" in output
    assert f"The platform's clock reads {at[:10]}" in output
    loaded = dict(re.findall(r"demo: (\w+): (\d+) commands sent, 0 already there", output))
    assert set(loaded) == {"registry", "training", "assessment", "selection"}
    assert all(int(sent) > 0 for sent in loaded.values())
