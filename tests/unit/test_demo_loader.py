"""The demo loader keeps within the organizer's share of commands: a 429 is sent again after its Retry-After."""

from __future__ import annotations

import httpx

from runtime import clock
from runtime.demo import DemoLoader


async def test_a_command_refused_for_the_rate_is_sent_again_after_retry_after() -> None:
    answers = iter([429, 429, 201])
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        status = next(answers)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://selection") as client:
        loader = DemoLoader(client, "token", hour=9)
        answer = await loader.send("POST", "/procedures", {"kind": "entry"}, clock.today())
    assert answer.status_code == 201
    assert seen == ["/procedures"] * 3
    assert (loader.sent, loader.skipped) == (1, 0)
