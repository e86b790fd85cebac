"""Actor tokens: verified once, remembered until they expire, never across keys."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm

from contracts.envelope import Actor, Role
from runtime import clock
from runtime.auth import ALGORITHM, ISSUER, ProviderKeys, issue_token, read_token, time_claim
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


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), "nan", "NaN", "Infinity", "9999999999", True]
)
def test_a_time_claim_that_is_no_finite_number_is_refused(claim: str, value: object) -> None:
    """Issue 22, hole 2: NaN compares false with everything, so a NaN `exp` never expired."""
    now = clock.now().timestamp()
    claims: dict[str, object] = {
        "sub": "u",
        "org": "cn.qs",
        "role": "auditor",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 60,
    }
    claims[claim] = value
    token = jwt.encode(claims, KEY, algorithm=ALGORITHM)  # PyJWT writes NaN and Infinity as JSON does not forbid
    with pytest.raises(UnauthorizedError, match="finite number"):
        read_token(KEY, token)


def test_every_numeric_claim_reading_goes_through_one_check() -> None:
    assert time_claim({"exp": 12}, "exp") == 12.0
    for bad in (float("nan"), float("inf"), "12", None, False, [1]):
        with pytest.raises(ValueError, match="finite number"):
            time_claim({"exp": bad}, "exp")


@pytest.mark.parametrize("claim", ["exp", "iat"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "9999999999"])
async def test_a_provider_token_whose_times_are_no_finite_numbers_is_refused(claim: str, value: object) -> None:
    """The identity provider's tokens go through the same check (PyJWT reads int(inf) as an overflow)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    provider = ProviderKeys("https://id.example")
    provider._keys = {"k1": PyJWK({**jwk, "kid": "k1", "alg": "RS256"})}  # as if read from its JWKS
    now = int(time.time())
    claims: dict[str, object] = {"sub": "s", "iss": "https://id.example", "aud": "pool", "iat": now, "exp": now + 60}
    sound = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    assert (await provider.verify(sound, audience="pool"))["sub"] == "s"
    claims[claim] = value
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(UnauthorizedError):
        await provider.verify(token, audience="pool")
