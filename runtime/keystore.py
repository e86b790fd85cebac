"""One key per cadre, kept outside the event store: sealing personal data, erasing it, granting it.

Personal fields are sealed with the cadre's data key (AES-256-GCM, the cadre id bound in as
associated data) before they enter an event, so the store, the topics, every archive and every
bundle hold only ciphertext. The keys live in a database of their own (`cadre_keys`), which is
never part of the service's database, its dumps, its topics or its replicas; each key is stored
wrapped by the deployment's master key, so a copy of that database alone opens nothing.

Erasure deletes the key and leaves a tombstone: the ciphertext everywhere stays as recorded
(the hash chain holds) and can no longer be opened, and no stale grant can bring the key back.

Another deployment may be granted a cadre's key explicitly: the key is sealed to that
deployment's X25519 public key (ECDH, HKDF-SHA256, AES-256-GCM) in a grant document it
imports; it destroys its copy when the cadre's `PersonalDataErased` reaches it (`KeyEraser`).
See ADR 0013.

A key, once held, is never replaced (ADR 0022): keys are kept by (cadre, key id), a cadre has
at most one key per deployment that made it, the key this deployment seals with is only ever
its own, and a grant that would put a second key of the same origin, another key under a key id
already held, or any key beside this deployment's own, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.envelope import OrgPath, canonical_json, uuid7
from contracts.personal import Sealed
from contracts.registry import PersonalDataErased
from contracts.sync import PublicKey
from runtime import clock, db, logs
from runtime.db import Conn, system_only
from runtime.errors import CommandError, ConflictError, GoneError
from runtime.projection import Recorded, Typed
from runtime.settings import DEV_MASTER_KEY

log = logs.get(__name__)

GRANT_FORMAT: Final = "cadre-pool-key-grant/2"

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS cadre_keys (
        cadre_id    uuid NOT NULL,
        key_id      uuid NOT NULL UNIQUE,
        wrapped     bytea NOT NULL,
        origin      text NOT NULL,
        created_at  timestamptz NOT NULL,
        PRIMARY KEY (cadre_id, key_id)
    )
    """,
    # Key stores made before keys were kept by version had one key per cadre (the primary key).
    """
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = 'cadre_keys'::regclass AND i.indisprimary
                   AND i.indnatts = 1) THEN
            ALTER TABLE cadre_keys DROP CONSTRAINT cadre_keys_pkey;
            ALTER TABLE cadre_keys ADD PRIMARY KEY (cadre_id, key_id);
        END IF;
    END $$
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS cadre_keys_one_per_origin ON cadre_keys (cadre_id, origin)",
    """
    CREATE TABLE IF NOT EXISTS erased_keys (
        cadre_id   uuid PRIMARY KEY,
        key_id     uuid,
        erased_at  timestamptz NOT NULL
    )
    """,
    *system_only("cadre_keys", "erased_keys"),
)


class PersonalDataSettings(BaseSettings):
    """Where a service keeps the cadres' keys (mixed into the settings of services that seal)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    personal_data_keystore_url: str | None = Field(
        default=None,
        description=(
            "PostgreSQL DSN of the key store, a database apart from the service's own"
            " (default: the service's database name + `_keys` on the same server, created if missing)"
        ),
    )
    personal_data_master_key: SecretStr = Field(
        default=SecretStr(DEV_MASTER_KEY),
        description="32 bytes, base64: wraps every cadre key at rest and derives this deployment's grant key pair",
    )
    personal_data_follow_topics: list[str] = Field(
        default=[],
        description="Topics of other deployments whose erasures destroy the keys they granted here (JSON list)",
    )

    def keystore_dsn(self, service_dsn: str) -> str:
        """The key store's DSN: the one set, or the service's database name + `_keys`."""
        if self.personal_data_keystore_url:
            return self.personal_data_keystore_url
        base, _, query = service_dsn.partition("?")
        server, _, name = base.rpartition("/")
        return f"{server}/{name}_keys" + (f"?{query}" if query else "")


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cadre-pool keystore: " + purpose).derive(master)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _aad(cadre_id: UUID, key_id: UUID) -> bytes:
    return f"cadre-pool personal data|{cadre_id}|{key_id}".encode()


def key_fingerprint(public: X25519PublicKey) -> str:
    """A short, stable name of a grant public key."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


class KeyGrant(BaseModel):
    """A cadre's key sealed to one recipient deployment: safe to send over any channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["cadre-pool-key-grant/2"] = "cadre-pool-key-grant/2"
    cadre_id: UUID
    org_path: OrgPath
    """Where the cadre sits, as its own deployment says (who may accept the grant is checked against it)."""
    key_id: UUID
    from_deployment: str
    to_deployment: str
    recipient_key_id: str
    ephemeral_public_key: PublicKey
    nonce: str
    wrapped_key: str

    def associated_data(self) -> bytes:
        """What the wrapped key is bound to: every field but the ciphertext."""
        return canonical_json(self.model_dump(mode="json", exclude={"wrapped_key"}))


class GrantKey(BaseModel):
    """A deployment's public key for receiving grants."""

    model_config = ConfigDict(extra="forbid")

    deployment: str
    key_id: str
    public_key: PublicKey
    """X25519, raw 32 bytes, base64."""


class KeyStore:
    """The cadres' data keys of one deployment, in a database of their own."""

    def __init__(self, pool: db.Pool, *, master_key: bytes, deployment: str) -> None:
        if len(master_key) != 32:  # noqa: PLR2004 - AES-256
            msg = "the personal data master key must be 32 bytes"
            raise ValueError(msg)
        self._pool = pool
        self._wrap = AESGCM(_derive(master_key, b"wrap cadre keys"))
        self._grant_key = X25519PrivateKey.from_private_bytes(_derive(master_key, b"receive grants"))
        self.deployment = deployment

    @classmethod
    async def connect(cls, dsn: str, *, master_key_b64: str, deployment: str, owner_dsn: str | None = None) -> KeyStore:
        """Open (creating it if missing, as `owner_dsn`'s role) the key store database and its tables."""
        owner_dsn = owner_dsn or dsn
        await db.ensure_database(owner_dsn)
        owner = await db.create_pool(owner_dsn, max_size=1)
        try:
            await db.apply_schema(owner, SCHEMA, secured=True)
            pool = await db.create_pool(dsn, max_size=4)
            await db.grant_membership(owner, str(await pool.fetchval("SELECT current_user")))
        finally:
            await owner.close()
        return cls(pool, master_key=_unb64(master_key_b64), deployment=deployment)

    async def close(self) -> None:
        """Close the key store's connections."""
        await self._pool.close()

    # -- the keys -------------------------------------------------------------------------

    def _wrapped(self, cadre_id: UUID, key_id: UUID, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._wrap.encrypt(nonce, key, _aad(cadre_id, key_id))

    def _unwrapped(self, cadre_id: UUID, key_id: UUID, wrapped: bytes) -> bytes:
        return self._wrap.decrypt(wrapped[:12], wrapped[12:], _aad(cadre_id, key_id))

    async def _refuse_erased(self, conn: Conn, cadre_id: UUID) -> None:
        if await conn.fetchval("SELECT 1 FROM erased_keys WHERE cadre_id = $1", cadre_id):
            msg = f"the personal data of cadre {cadre_id} was erased"
            raise GoneError(msg)

    async def sealing_key(self, cadre_id: UUID) -> tuple[UUID, bytes]:
        """This deployment's own key of the cadre (made on first use); `GoneError` once erased.

        Never a granted key: what this deployment seals opens with the key it made itself.
        """
        own = "SELECT key_id, wrapped FROM cadre_keys WHERE cadre_id = $1 AND origin = $2"
        async with self._pool.acquire() as conn, conn.transaction():
            await self._refuse_erased(conn, cadre_id)
            row = await conn.fetchrow(own, cadre_id, self.deployment)
            if row is None:
                key_id, key = uuid7(), AESGCM.generate_key(bit_length=256)
                inserted = await conn.fetchrow(
                    "INSERT INTO cadre_keys (cadre_id, key_id, wrapped, origin, created_at) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (cadre_id, origin) DO NOTHING RETURNING key_id",
                    cadre_id,
                    key_id,
                    self._wrapped(cadre_id, key_id, key),
                    self.deployment,
                    clock.now(),
                )
                if inserted is not None:
                    return key_id, key
                row = await conn.fetchrow(own, cadre_id, self.deployment)
            assert row is not None
            return row["key_id"], self._unwrapped(cadre_id, row["key_id"], row["wrapped"])

    async def key(self, cadre_id: UUID, key_id: UUID) -> bytes | None:
        """The key `key_id` of a cadre, if this deployment holds it."""
        row = await self._pool.fetchrow(
            "SELECT wrapped FROM cadre_keys WHERE cadre_id = $1 AND key_id = $2", cadre_id, key_id
        )
        return None if row is None else self._unwrapped(cadre_id, key_id, row["wrapped"])

    async def is_erased(self, cadre_id: UUID) -> bool:
        """Whether this deployment destroyed the cadre's key."""
        return bool(await self._pool.fetchval("SELECT 1 FROM erased_keys WHERE cadre_id = $1", cadre_id))

    async def destroy(self, erasures: Mapping[UUID, UUID | None]) -> int:
        """Destroy cadres' keys (cadre id → key id, if known) and remember them erased; how many were held.

        Idempotent. An erasure is remembered even where the key was never held, so that a
        grant sent earlier can no longer be accepted and no new key is made.
        """
        now = clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            gone = await conn.fetch(
                "DELETE FROM cadre_keys WHERE cadre_id = ANY($1::uuid[]) RETURNING cadre_id, key_id", list(erasures)
            )
            tombstones = {**erasures, **{row["cadre_id"]: row["key_id"] for row in gone}}
            await conn.executemany(
                "INSERT INTO erased_keys (cadre_id, key_id, erased_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(cadre_id, key_id, now) for cadre_id, key_id in tombstones.items()],
            )
        if gone:
            log.info("cadre keys destroyed", count=len(gone))
        return len(gone)

    # -- sealing ------------------------------------------------------------------------

    async def seal(self, cadre_id: UUID, plaintext: bytes) -> Sealed:
        """Encrypt `plaintext` with the cadre's key."""
        key_id, key = await self.sealing_key(cadre_id)
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(cadre_id, key_id))
        return Sealed(key_id=key_id, nonce=_b64(nonce), ciphertext=_b64(ciphertext))

    async def open(self, cadre_id: UUID, sealed: Sealed) -> bytes | None:
        """The plaintext, or None when this deployment does not (or no longer) hold the key."""
        key = await self.key(cadre_id, sealed.key_id)
        if key is None:
            return None
        try:
            return AESGCM(key).decrypt(_unb64(sealed.nonce), _unb64(sealed.ciphertext), _aad(cadre_id, sealed.key_id))
        except InvalidTag:
            msg = "sealed personal data does not open with the cadre's key: altered, or sealed for another cadre"
            raise CommandError(msg) from None

    # -- grants to other deployments ------------------------------------------------------

    def grant_public_key(self) -> GrantKey:
        """This deployment's public key for receiving grants."""
        public = self._grant_key.public_key()
        return GrantKey(
            deployment=self.deployment,
            key_id=key_fingerprint(public),
            public_key=_b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        )

    async def grant(self, cadre_id: UUID, org_path: str, recipient: GrantKey) -> KeyGrant:
        """Seal this deployment's key of the cadre (at `org_path`) to `recipient`'s public key."""
        async with self._pool.acquire() as conn:
            await self._refuse_erased(conn, cadre_id)
            row = await conn.fetchrow(
                "SELECT key_id, wrapped FROM cadre_keys WHERE cadre_id = $1 AND origin = $2", cadre_id, self.deployment
            )
        if row is None:
            msg = f"cadre {cadre_id} has no personal data to grant"
            raise ConflictError(msg)
        key = self._unwrapped(cadre_id, row["key_id"], row["wrapped"])
        return seal_grant(cadre_id, org_path, row["key_id"], key, from_deployment=self.deployment, recipient=recipient)

    async def accept(self, grant: KeyGrant, *, dry_run: bool = False) -> bool:
        """Keep a key another deployment granted to this one; whether it is new here.

        Refused when the cadre's data was erased (`GoneError`), and whenever it would stand
        beside or instead of a key already held (`ConflictError`): this deployment's own key of
        the cadre, another key under the same key id, or another key from the same deployment.
        The same grant accepted twice is no change (False).
        """
        if grant.to_deployment != self.deployment or grant.recipient_key_id != self.grant_public_key().key_id:
            msg = f"the grant is for {grant.to_deployment} (key {grant.recipient_key_id}), not this deployment"
            raise CommandError(msg)
        if grant.from_deployment == self.deployment:
            msg = "a grant comes from another deployment: this one's own keys are made here, never imported"
            raise CommandError(msg)
        try:
            ephemeral = X25519PublicKey.from_public_bytes(_unb64(grant.ephemeral_public_key))
            wrapping = _grant_wrapping_key(self._grant_key.exchange(ephemeral), grant)
            key = AESGCM(wrapping).decrypt(_unb64(grant.nonce), _unb64(grant.wrapped_key), grant.associated_data())
        except (ValueError, InvalidTag):
            msg = "the grant does not open with this deployment's key: altered or not meant for it"
            raise CommandError(msg) from None
        cadre_id = grant.cadre_id
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(cadre_id))
            await self._refuse_erased(conn, cadre_id)
            for row in await conn.fetch("SELECT key_id, wrapped, origin FROM cadre_keys WHERE cadre_id = $1", cadre_id):
                if row["key_id"] == grant.key_id and row["origin"] == grant.from_deployment:
                    if self._unwrapped(cadre_id, row["key_id"], row["wrapped"]) == key:
                        return False
                    msg = f"another key is held under key id {grant.key_id}: a key is never replaced"
                    raise ConflictError(msg)
                if row["origin"] == self.deployment:
                    msg = f"this deployment made cadre {cadre_id}'s key: a grant never replaces it"
                    raise ConflictError(msg)
                if row["origin"] == grant.from_deployment or row["key_id"] == grant.key_id:
                    msg = f"a key of cadre {cadre_id} from {row['origin']} is already held: a key is never replaced"
                    raise ConflictError(msg)
            if dry_run:
                return True
            await conn.execute(
                "INSERT INTO cadre_keys (cadre_id, key_id, wrapped, origin, created_at) VALUES ($1, $2, $3, $4, $5)",
                cadre_id,
                grant.key_id,
                self._wrapped(cadre_id, grant.key_id, key),
                grant.from_deployment,
                clock.now(),
            )
        log.info("cadre key accepted", cadre_id=str(cadre_id), origin=grant.from_deployment)
        return True


def seal_grant(
    cadre_id: UUID,
    org_path: str,
    key_id: UUID,
    key: bytes,
    *,
    from_deployment: str,
    recipient: GrantKey,
) -> KeyGrant:
    """`key` sealed to the recipient's public key (anyone can make one: acceptance is what is checked)."""
    try:
        public = X25519PublicKey.from_public_bytes(_unb64(recipient.public_key))
    except ValueError as error:
        msg = f"not an X25519 public key: {error}"
        raise CommandError(msg) from None
    ephemeral = X25519PrivateKey.generate()
    nonce = os.urandom(12)
    unsealed = KeyGrant(
        cadre_id=cadre_id,
        org_path=org_path,
        key_id=key_id,
        from_deployment=from_deployment,
        to_deployment=recipient.deployment,
        recipient_key_id=key_fingerprint(public),
        ephemeral_public_key=_b64(ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
        nonce=_b64(nonce),
        wrapped_key="",
    )
    wrapping = _grant_wrapping_key(ephemeral.exchange(public), unsealed)
    wrapped = AESGCM(wrapping).encrypt(nonce, key, unsealed.associated_data())
    return unsealed.model_copy(update={"wrapped_key": _b64(wrapped)})


def _grant_wrapping_key(shared: bytes, grant: KeyGrant) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"cadre-pool key grant|" + grant.associated_data()
    ).derive(shared)


class KeyEraser(Typed):
    """Destroys the keys of cadres whose erasure arrives (from this or another deployment's topic)."""

    name = "key-eraser"
    events = (PersonalDataErased,)

    def __init__(self, keystore: Callable[[], KeyStore]) -> None:
        self._keystore = keystore
        """The key store, once the service has started."""

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Destroy the keys (in the key store's own database: a repeat finds nothing to destroy)."""
        del conn
        erased = {r.event.cadre_id: r.event.key_id for r in events if isinstance(r.event, PersonalDataErased)}
        if erased:
            await self._keystore().destroy(erased)
