"""Actor tokens: verified once, remembered until they expire, never across keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts.envelope import Actor, Role
from runtime import clock
from runtime.auth import issue_token, read_token
from runtime.errors import UnauthorizedError

KEY = "k" * 32


def test_tokens_verify_and_expire() -> None:
    actor = Actor(user="u", org_path="cn.qs", role=Role.AUDITOR)
    token = issue_token(KEY, actor)
    assert read_token(KEY, token) == actor
    assert read_token(KEY, token) == actor  # remembered, same answer
    with pytest.raises(UnauthorizedError):
        read_token("x" * 32, token)  # another key: the remembered answer does not apply
    with pytest.raises(UnauthorizedError):
        read_token(KEY, token[:-2] + "xx")
    short = issue_token(KEY, actor, ttl=timedelta(seconds=1))
    assert read_token(KEY, short) == actor
    clock.use(clock.current().at(clock.now() + timedelta(seconds=2)))  # past its expiry
    with pytest.raises(UnauthorizedError, match="expired"):
        read_token(KEY, short)


def test_a_token_from_the_future_is_refused() -> None:
    actor = Actor(user="u", org_path="cn.qs", role=Role.AUDITOR)
    later = clock.current().at(clock.now() + timedelta(hours=1))
    before = clock.current()
    clock.use(later)
    token = issue_token(KEY, actor)
    clock.use(before)
    with pytest.raises(UnauthorizedError, match="not yet valid"):
        read_token(KEY, token)
