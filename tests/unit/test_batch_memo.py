"""A batch's memo: one lookup for many askers; what was not found, or failed, is asked again."""

from __future__ import annotations

import asyncio

import pytest

from runtime.batch import Memo


async def test_concurrent_askers_share_one_lookup_and_misses_are_not_kept() -> None:
    memo = Memo()
    calls: list[str] = []

    async def load(value: str | None) -> str | None:
        calls.append(str(value))
        await asyncio.sleep(0)
        return value

    found = await asyncio.gather(*(memo.get("unit", lambda: load("cn.qs")) for _ in range(100)))
    assert found == ["cn.qs"] * 100
    assert calls == ["cn.qs"]
    assert await memo.get("nowhere", lambda: load(None)) is None
    assert await memo.get("nowhere", lambda: load("cn.qs.new")) == "cn.qs.new"  # registered meanwhile


async def test_a_failed_lookup_is_tried_again() -> None:
    memo = Memo()

    async def broken() -> str:
        msg = "database gone"
        raise ConnectionError(msg)

    async def working() -> str:
        return "cn"

    with pytest.raises(ConnectionError):
        await memo.get("unit", broken)
    assert await memo.get("unit", working) == "cn"
