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

from deploy.local.stack import REPO
from runtime import clock
from tests.infra import Infra

pytestmark = pytest.mark.dates

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


def test_up_is_running_with_its_demo_at_any_hour(infra: Infra, namespace: str, tmp_path: Path) -> None:
    # The command itself, on the suite's Kafka and PostgreSQL (its own topics and databases), at the
    # test's instant: the awkward ones too (00:30 in the organization, the year's last seconds, ...).
    at = clock.now().strftime("%Y-%m-%dT%H:%M:%S%z")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.postgres_dsn,
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }
    env.pop("SMTP_HOST", None)
    command = [sys.executable, "-m", "deploy.local", "up", "--workdir", str(tmp_path / "stack"), "--cadres", "40"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, "--namespace", f"{namespace}.", "--at", at],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output = _read_until(process, READY, timeout=240)
        assert READY in output, output[-5000:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
    assert code == 0
    assert f"The platform's clock reads {at[:10]}" in output
    loaded = dict(re.findall(r"demo: (\w+): (\d+) commands sent, 0 already there", output))
    assert set(loaded) == {"registry", "training", "assessment"}
    assert all(int(sent) > 0 for sent in loaded.values())
