"""Loading a service's part of the demo organization through its own HTTP API.

Every demo record is entered late, on the day it happened (`X-Occurred-At`): at a
fixed hour of the organization's wall clock on that day, never later than now, so
the demo's history ends at the organization's today whatever the hour. Most of it
lies beyond the backdating window: the demo's token carries the `late_entry`
permission and every command says why (`X-Late-Entry-Reason`), so each is recorded
as a declared late entry (runtime.http). Ids come from the seed, so loading again
answers 409 for what is there and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import date, datetime
from typing import Any

import httpx

from runtime import clock
from runtime.http import LATE_REASON_HEADER

LATE_REASON = "demo organization: its history entered at once"


def moment(day: date, hour: int) -> datetime:
    """When a demo record of `day` is stamped: `hour` o'clock in the organization, or now if that is later."""
    return min(clock.current().on(day, hour), clock.now())


class DemoLoader:
    """Sends one service's demo commands, counting what was sent and what was already there."""

    def __init__(self, client: httpx.AsyncClient, token: str, *, hour: int) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}
        self.hour = hour
        self.sent = 0
        self.skipped = 0

    async def send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        day: date,
        *,
        if_match: int | None = None,
        tolerate: Collection[int] = (),
        until_known: bool = False,
    ) -> httpx.Response:
        """Send a command that happened on `day`; 409 (already there) and `tolerate` count as skipped.

        `until_known`: a 404 means the service has not projected what the command names yet (a unit, a
        cadre of another service's topic): it is sent again, for at most two minutes.
        """
        headers = {**self.auth, "X-Occurred-At": moment(day, self.hour).isoformat(), LATE_REASON_HEADER: LATE_REASON}
        if if_match is not None:
            headers["If-Match"] = str(if_match)
        response = await self._within_limit(method, url, body, headers)
        if until_known and response.status_code == httpx.codes.NOT_FOUND:
            async with asyncio.timeout(120):
                while response.status_code == httpx.codes.NOT_FOUND:
                    await asyncio.sleep(0.5)
                    response = await self._within_limit(method, url, body, headers)
        if response.status_code == httpx.codes.CONFLICT or response.status_code in tolerate:
            self.skipped += 1
        elif response.is_error:
            msg = f"demo command {method} {url} failed: {response.status_code} {response.text}"
            raise RuntimeError(msg)
        else:
            self.sent += 1
        return response

    async def _within_limit(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        """Send; beyond the organizer's share of commands (429), again after the `Retry-After` it was told."""
        response = await self.client.request(method, url, json=body, headers=headers)
        async with asyncio.timeout(120):
            while response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                told = response.headers.get("Retry-After", "")
                await asyncio.sleep(max(float(told) if told.replace(".", "", 1).isdigit() else 1.0, 0.05))
                response = await self.client.request(method, url, json=body, headers=headers)
        return response

    async def get(self, url: str) -> httpx.Response:
        """A query, with the loader's token."""
        return await self.client.get(url, headers=self.auth)

    async def wait_until_found(self, url: str) -> None:
        """Wait (at most two minutes) until `url` answers 200: the service has projected what the demo needs."""
        async with asyncio.timeout(120):
            while True:
                if (await self.get(url)).status_code == httpx.codes.OK:
                    return
                await asyncio.sleep(0.5)
