"""The platform in containers, end to end: every image built, the compose stack up, the demo loaded,
a demo person signed in to the console through the containerised Keycloak, tried through the
containers, two services killed and restarted, everything taken down.

It needs a Docker engine: the one DOCKER_HOST names, one on the default socket, or Debian's dockerd
started by deploy/containers on a private socket (installed from Debian when missing). It never
skips: when no engine can be had, it fails. The run takes minutes (the first on a machine builds
the base images and Compose), see docs/operations.md.
"""

from __future__ import annotations

import pytest

from deploy.containers import stack
from deploy.containers.engine import engine
from deploy.local.stack import SERVICES
from tests import infra


@pytest.mark.containers
@pytest.mark.timeout(2400)
def test_the_platform_runs_in_containers_and_survives_a_kill() -> None:
    report = stack.run()

    print("\n".join(report.lines()))  # noqa: T201 - the figures, shown with -s or on failure
    assert report.images in {"official", "standins"}
    assert set(report.memory) >= {*SERVICES, "console", "keycloak", "kafka", "postgres", "mail"}
    assert {f"{stack.PROJECT}-{name}" for name in (*SERVICES, "console")} <= set(report.image_sizes)
    checks = "\n".join(report.checks)
    for found in ("every container healthy", "uid 10001 on a read-only root", "reached training and audit",
                  "record intact", "killed (SIGKILL)",
                  "signed in through the containerised Keycloak to the console"):  # fmt: skip
        assert found in checks, checks


@pytest.mark.containers
def test_the_suite_draws_on_testcontainers_only_where_their_images_are(monkeypatch: pytest.MonkeyPatch) -> None:
    with engine() as docker:
        monkeypatch.setenv("DOCKER_HOST", docker.host)
        at_hand = all(
            docker.docker("image", "inspect", image).returncode == 0 for image in infra.testcontainers_images()
        )
        monkeypatch.delenv("CADRE_TEST_INFRA", raising=False)
        assert infra._use_testcontainers() is at_hand  # here: an engine answers, but nothing could be pulled
        monkeypatch.setenv("CADRE_TEST_INFRA", "containers")
        assert infra._use_testcontainers() is True
        monkeypatch.setenv("CADRE_TEST_INFRA", "local")
        assert infra._use_testcontainers() is False
