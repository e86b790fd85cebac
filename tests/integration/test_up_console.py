"""`./dev up` serves one address: the console, where the demo organization's people sign in through its Keycloak."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deploy.local.keycloak import DEMO_PASSWORD
from deploy.local.ports import free_port
from deploy.local.signin import Browserish, console_sign_in
from tests.infra import Infra
from tests.integration.test_dev_up import READY, _read_until, stop, up
from tests.integration.test_local_deploy import _gone


@pytest.mark.usefixtures("keycloak")  # started first, so that its one-time build is not timed here
async def test_up_serves_one_address_where_the_demo_people_sign_in(
    infra: Infra, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    process = up(infra, namespace, tmp_path / "stack", port)
    try:
        output = await asyncio.to_thread(_read_until, process, READY, 300)
        assert READY in output, output[-5000:]
        assert "organizer.county" in output
        assert DEMO_PASSWORD in output
        client = Browserish(base_url=f"http://127.0.0.1:{port}")
        try:
            page = await console_sign_in(client, "organizer.county")
            assert page.status_code == 200, page.text[-2000:]
            assert "Wang Fang" in page.text
            document = await client.get("/api/registry/openapi.json")
            assert document.json()["servers"] == [{"url": "/api/registry"}]
        finally:
            await client.aclose()
    finally:
        code = stop(process)
    assert code == 0
    assert _gone(cmdline_contains=str(tmp_path / "stack" / "keycloak"))  # its Keycloak stopped with it
