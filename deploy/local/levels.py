"""Several levels of the organization, each its own stack, linked as in production (ADR 0010).

`run_levels` brings up a province, one of its cities and one of that city's counties
(fewer with `count`): for each, its own Kafka, its own PostgreSQL and every service, with
the topology settings that say who owns what and whose keys to trust; then one MirrorMaker 2
process for every link (each child's topics up to its parent, the parent's sync events down).
`./dev up --levels 3` runs it with the demo organization split across the levels, and with
`consoles` each level's own console on a free port, every one signing people in through one
local Keycloak (a client of its own per level, `cadre-console-<level>`).

The levels' signing keys are derived from their names: development keys, for this local
topology only (a real deployment sets CHECKPOINT_SIGNING_KEY from its secret store).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from deploy.local import stack as local_stack
from deploy.local.kafka import LocalKafka
from deploy.local.keycloak import CONSOLE_CLIENT, LocalKeycloak, demo_users, realm
from deploy.local.mirrormaker import LocalMirrorMaker
from deploy.local.ports import free_ports
from deploy.local.postgres import LocalPostgres
from deploy.mirroring import Topology
from runtime import checkpoint
from runtime.settings import development_checkpoint_key
from services.registry.demo import DemoOrg


@dataclass(frozen=True)
class Level:
    """One deployment of the local topology: its name (MirrorMaker's alias), its root unit, its parent."""

    name: str
    root: str
    parent: str | None = None


LEVELS: Final = (
    Level("qs", "qs"),
    Level("bh", "qs.bh", parent="qs"),
    Level("bh_c1", "qs.bh.bh_c1", parent="bh"),
)
"""The demo organization's province, its city Baihe, and Baihe's first county."""


def development_key(level: str) -> str:
    """A level's development signing key (an Ed25519 seed, base64), derived from its name: local use only.

    Services refuse it outside ENVIRONMENT=development (runtime.settings).
    """
    return development_checkpoint_key(level)


def environment(level: Level, levels: Sequence[Level]) -> dict[str, str]:
    """The topology settings every service of `level` gets."""
    children = {
        child.name: {"root": child.root, "public_key": checkpoint.public_key_b64(development_key(child.name))}
        for child in levels
        if child.parent == level.name
    }
    env = {
        "DEPLOYMENT_ID": level.name,
        "DEPLOYMENT_ROOT": level.root,
        "CHILD_DEPLOYMENTS": json.dumps(children),
        "CHECKPOINT_SIGNING_KEY": development_key(level.name),
    }
    if level.parent is not None:
        env["PARENT_DEPLOYMENT"] = level.parent
        env["PARENT_PUBLIC_KEY"] = checkpoint.public_key_b64(development_key(level.parent))
    return env


@dataclass
class Running:
    """The levels up, and their link."""

    levels: list[Level]
    stacks: dict[str, local_stack.Stack] = field(default_factory=dict)
    mirror: LocalMirrorMaker | None = None
    issuer: str = ""
    """The identity provider every level's console signs people in with (empty: no consoles)."""

    def demo_part(self, level: Level) -> Callable[[DemoOrg], DemoOrg]:
        """The part of the demo organization a level loads: its subtree, less its children's."""
        below = [child.root for child in self.levels if child.parent == level.name]

        def part(org: DemoOrg) -> DemoOrg:
            return org.part(level.root, without=below)

        return part


def console_client(level: Level) -> str:
    """The client id of a level's console at the identity provider."""
    return f"{CONSOLE_CLIENT}-{level.name}"


def _identity_provider(workdir: Path, ports: Mapping[str, int], levels: Sequence[Level]) -> LocalKeycloak:
    """One Keycloak for every level: the demo organization's people, a console client per level."""
    clients = {console_client(level): [f"http://127.0.0.1:{ports[level.name]}/*"] for level in levels}
    return LocalKeycloak(realm(demo_users(), redirect_uris=[], clients=clients), workdir / "keycloak")


@contextlib.contextmanager
def run_levels(
    workdir: Path,
    count: int = 3,
    *,
    namespace: str = "",
    services: list[str] | None = None,
    consoles: bool = False,
) -> Iterator[Running]:
    """Bring `count` levels up (province first), then MirrorMaker; take everything down when the block ends.

    With `consoles`, first one Keycloak, then each level's console on a free port beside its services.
    """
    if not 1 <= count <= len(LEVELS):
        msg = f"--levels takes 1 to {len(LEVELS)}"
        raise ValueError(msg)
    levels = list(LEVELS[:count])
    running = Running(levels=levels)
    with contextlib.ExitStack() as exits:
        ports = {level.name: port for level, port in zip(levels, free_ports(len(levels)), strict=True)}
        if consoles:
            provider = _identity_provider(workdir, ports, levels)
            exits.callback(provider.stop)
            running.issuer = provider.start()
        for level in levels:
            home = workdir / level.name
            kafka = exits.enter_context(LocalKafka(home / "kafka"))
            postgres = exits.enter_context(LocalPostgres())
            running.stacks[level.name] = exits.enter_context(
                local_stack.run_stack(
                    home,
                    services=services,
                    namespace=namespace,
                    kafka=kafka.bootstrap_servers,
                    postgres=postgres.dsn("postgres"),
                    env=environment(level, levels),
                    console_port=ports[level.name] if consoles else None,
                    issuer=running.issuer,
                    console_env={"OIDC_CLIENT_ID": console_client(level)},
                )
            )
        if len(levels) > 1:
            clusters = {name: stack.kafka_bootstrap for name, stack in running.stacks.items()}
            parents = {level.name: level.parent for level in levels if level.parent is not None}
            mirror = LocalMirrorMaker(Topology.tree(clusters, parents, namespace=namespace), workdir / "mirror")
            exits.callback(mirror.stop)
            mirror.start()
            running.mirror = mirror
        yield running
