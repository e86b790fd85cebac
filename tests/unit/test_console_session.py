"""Sealed session cookies: private, tamper-evident, bound to their purpose, ended on time; CSRF tokens compared."""

from __future__ import annotations

from dataclasses import replace

from runtime import clock
from services.console.session import SESSION_COOKIE, SIGNIN_COOKIE, Sealer, Session, csrf_ok


def _session(**changes: object) -> Session:
    far = clock.now().timestamp() + 3600
    session = Session("u.1", "U One", "viewer", "qs.bh", "bh", "Baihe", "access", "refresh", far, far)
    return replace(session, **changes)  # type: ignore[arg-type]


def test_a_sealed_session_opens_only_whole_and_with_its_key() -> None:
    sealer = Sealer("k" * 40)
    session = _session()
    value = sealer.seal_session(session)
    assert "u.1" not in value
    assert "access" not in value
    assert sealer.session(value) == session
    assert Sealer("x" * 40).session(value) is None
    flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
    assert sealer.session(flipped) is None
    assert sealer.session("") is None
    assert sealer.session("not base64 !!") is None
    assert sealer.open(SIGNIN_COOKIE, value) is None  # sealed for another cookie: refused
    assert sealer.open(SESSION_COOKIE, value) is not None


def test_a_session_ends_when_its_time_is_up() -> None:
    sealer = Sealer("k" * 40)
    assert sealer.session(sealer.seal_session(_session(ends=clock.now().timestamp() - 1))) is None


def test_csrf_tokens_are_per_session() -> None:
    one, two = _session(), _session()
    assert one.csrf != two.csrf
    assert csrf_ok(one, one.csrf)
    assert not csrf_ok(one, two.csrf)
    assert not csrf_ok(one, None)
    assert not csrf_ok(one, "")


def test_only_organizers_write_and_auditors_audit() -> None:
    assert _session(role="organizer").may_write
    assert not _session(role="auditor").may_write
    assert _session(role="auditor").may_audit
    assert not _session(role="viewer").may_audit
