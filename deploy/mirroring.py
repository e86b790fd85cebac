"""Which topics MirrorMaker 2 copies between the deployments of one organization, and the configuration that says so.

A `Topology` names the Kafka cluster of every deployment (province, city, county...)
and the links between them. `Topology.tree` builds the usual one from who is whose
parent (ADR 0010): upward, a child's own `<service>.events` and what it received,
verified, from below (`<service>.received`) arrive at its parent as `<child>.<topic>`
(MirrorMaker's DefaultReplicationPolicy); downward, the parent's `sync.events` (its
directives) arrive at each child as `<parent>.sync.events`. Names stay one hop deep:
a level passes on what it verified, never MirrorMaker's raw copies.

The same topology renders to MirrorMaker 2's properties file (`properties`: the local
launcher in deploy/local/mirrormaker.py and the compose service run it) and to Strimzi's
`KafkaMirrorMaker2` resource (`strimzi_mirrormaker2`: Kubernetes). ADR 0011 says why the
settings in `Tuning` are what they are.

    python -m deploy.mirroring           # rewrite the compose and Kubernetes examples from EXAMPLES
    python -m deploy.mirroring --check   # exit 1 when they differ from what this module renders
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from contracts import topics

UPWARD: Final = (*topics.ALL, *topics.RECEIVED)
"""What flows from a child to its parent: each service's own events and what it received from below."""
DOWNWARD: Final = (topics.SYNC,)
"""What flows from a parent to its children: its sync service's events (directives among them)."""
HEARTBEATS: Final = "heartbeats"
"""MirrorMaker's heartbeat topic: each herder writes one record a second into its target cluster's."""
SEPARATOR: Final = "."
"""DefaultReplicationPolicy's separator: `<source alias>.<topic>`."""

_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_REPO: Final = Path(__file__).resolve().parents[1]


def remote_topic(source: str, topic: str) -> str:
    """What `source`'s `topic` is called where MirrorMaker copies it: `<source>.<topic>`."""
    return f"{source}{SEPARATOR}{topic}"


@dataclass(frozen=True)
class Link:
    """One direction of replication: `topics` (exact names at `source`) copied into `target`."""

    source: str
    target: str
    topics: tuple[str, ...]

    def pattern(self) -> str:
        """The topics as one exact regular expression (each name escaped, joined by `|`)."""
        return "|".join(re.escape(topic) for topic in self.topics)


@dataclass(frozen=True)
class Tuning:
    """How MirrorMaker 2 runs every link (ADR 0011)."""

    offset_flush_ms: int = 1000
    """How often a task records how far it has copied. A crash re-sends at most what was copied since."""
    refresh_topics_seconds: int = 5
    """How soon a topic created after the start is noticed (MirrorMaker's default: 600)."""
    replication_factor: int = 1
    """Of the copied topics and of MirrorMaker's own; -1 takes the broker's default (production)."""
    internal_partitions: int = 1
    """Partitions of the Connect worker's offset and status topics (one task per link needs no more)."""
    heartbeat_seconds: int = 1
    """Heartbeat interval: `<source>.heartbeats` at the target shows a link is alive."""
    exactly_once: bool = False
    """KIP-618 transactions (readers then need read_committed). ADR 0011: off; readers dedupe."""
    rest_port: int | None = None
    """The internal REST listener's port (127.0.0.1); exactly-once needs it."""
    transaction_timeout_ms: int | None = None
    """Exactly-once only: how long a dead process's open transaction holds readers back (Kafka's default: 60 s)."""


@dataclass(frozen=True)
class Topology:
    """The Kafka clusters of some deployments and the links MirrorMaker 2 keeps between them."""

    clusters: Mapping[str, str]
    """Deployment name (MirrorMaker's cluster alias, the prefix of what it sends) → bootstrap servers."""
    links: tuple[Link, ...]

    def __post_init__(self) -> None:
        problems = [
            f"deployment name {name!r} is not [a-z][a-z0-9_-]*" for name in self.clusters if not _ALIAS.fullmatch(name)
        ]
        seen: set[tuple[str, str]] = set()
        for link in self.links:
            where = f"link {link.source}->{link.target}"
            if link.source not in self.clusters or link.target not in self.clusters:
                problems.append(f"{where}: unknown deployment")
            if link.source == link.target:
                problems.append(f"{where}: a deployment cannot mirror into itself")
            if (link.source, link.target) in seen:
                problems.append(f"{where}: given twice")
            seen.add((link.source, link.target))
            if not link.topics:
                problems.append(f"{where}: no topics")
            # DefaultReplicationPolicy reads `a.b.c` as "came from a, via b": MirrorMaker drops a topic as a
            # cycle when a segment before its last names the target, so such a name would never arrive.
            problems += [
                f"{where}: MirrorMaker would drop {topic!r} as a cycle (a segment names the target)"
                for topic in link.topics
                if link.target in topic.split(SEPARATOR)[:-1]
            ]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def tree(
        cls,
        clusters: Mapping[str, str],
        parents: Mapping[str, str],
        *,
        namespace: str = "",
        upward: Iterable[str] = UPWARD,
        downward: Iterable[str] = DOWNWARD,
    ) -> Topology:
        """Links up and down a tree of deployments (`parents`: child → parent), one hop each.

        Each child sends its `upward` topics to its parent; each parent sends its
        `downward` topics to each child. `namespace` prefixes every topic as
        TOPIC_NAMESPACE does.
        """
        own_up = tuple(topics.namespaced(namespace, name) for name in upward)
        own_down = tuple(topics.namespaced(namespace, name) for name in downward)
        segments = {segment for topic in (*own_up, *own_down) for segment in topic.split(SEPARATOR)}
        if clash := sorted(segments & set(clusters)):
            # MirrorMaker would read such a segment as a hop, and drop the topic as a cycle at that deployment.
            msg = f"deployment names {clash} are also segments of topic names; rename the deployments"
            raise ValueError(msg)
        for child, parent in parents.items():
            if child not in clusters or parent not in clusters:
                msg = f"{child} -> {parent}: unknown deployment"
                raise ValueError(msg)
        _check_acyclic(parents)
        links: list[Link] = []
        for child, parent in sorted(parents.items()):
            links.append(Link(child, parent, own_up))
            links.append(Link(parent, child, own_down))
        return cls(clusters=dict(clusters), links=tuple(links))

    def link(self, source: str, target: str) -> Link:
        """The link from `source` to `target`."""
        for link in self.links:
            if (link.source, link.target) == (source, target):
                return link
        msg = f"no link {source}->{target}"
        raise KeyError(msg)

    def heartbeat_pairs(self) -> list[tuple[str, str]]:
        """The herders that emit heartbeats: the reverse of every link (their heartbeats show the link alive)."""
        return sorted({(link.target, link.source) for link in self.links})


def _check_acyclic(parents: Mapping[str, str]) -> None:
    for start in parents:
        seen = {start}
        node = parents.get(start)
        while node is not None:
            if node in seen:
                msg = f"the parents form a cycle through {node}"
                raise ValueError(msg)
            seen.add(node)
            node = parents.get(node)


# --- MirrorMaker 2's configuration -----------------------------------------------------------------


def settings(topology: Topology, tuning: Tuning) -> dict[str, str]:
    """Every MirrorMaker 2 setting for `topology`, as dedicated mode reads them (one flat map)."""
    out: dict[str, str] = {"clusters": ", ".join(topology.clusters)}
    for name, bootstrap in topology.clusters.items():
        out[f"{name}.bootstrap.servers"] = bootstrap
        # Worker settings count only per target cluster: a top-level offset.flush.interval.ms is ignored.
        out[f"{name}.offset.flush.interval.ms"] = str(tuning.offset_flush_ms)
        out[f"{name}.plugin.discovery"] = "service_load"
        if tuning.exactly_once:
            out[f"{name}.exactly.once.source.support"] = "enabled"
            if tuning.transaction_timeout_ms is not None:
                out[f"{name}.producer.transaction.timeout.ms"] = str(tuning.transaction_timeout_ms)
    out |= {
        # Every plugin here ships a ServiceLoader manifest: reading those instead of scanning every class of
        # the class path takes seconds off each start (each herder scans again: the setting is per cluster too).
        "plugin.discovery": "service_load",
        "replication.policy.class": "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
        "topics": "",  # a flow replicates only what its own `topics` names
        "tasks.max": "1",
        "refresh.topics.interval.seconds": str(tuning.refresh_topics_seconds),
        "sync.topic.configs.enabled": "true",  # retention.ms=-1 travels with the topic
        "sync.topic.acls.enabled": "false",
        "emit.checkpoints.enabled": "false",
        "sync.group.offsets.enabled": "false",
        "refresh.groups.enabled": "false",
        "emit.offset-syncs.enabled": "false",  # nothing written into the source cluster
        "emit.heartbeats.enabled": "false",
        "emit.heartbeats.interval.seconds": str(tuning.heartbeat_seconds),
    }
    factor = str(tuning.replication_factor)
    for key in (
        "replication.factor",
        "heartbeats.topic.replication.factor",
        "checkpoints.topic.replication.factor",
        "offset.storage.replication.factor",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
    ):
        out[key] = factor
    out["offset.storage.partitions"] = str(tuning.internal_partitions)
    out["status.storage.partitions"] = str(tuning.internal_partitions)
    if tuning.exactly_once or tuning.rest_port is not None:
        out["dedicated.mode.enable.internal.rest"] = "true"
        out["listeners"] = f"http://127.0.0.1:{tuning.rest_port or 0}"
    for source, target in topology.heartbeat_pairs():
        out[f"{source}->{target}.emit.heartbeats.enabled"] = "true"
    for link in topology.links:
        out[f"{link.source}->{link.target}.enabled"] = "true"
        out[f"{link.source}->{link.target}.topics"] = link.pattern()
    return out


def properties(topology: Topology, tuning: Tuning) -> str:
    """MirrorMaker 2's properties file (dedicated mode) for `topology`."""
    lines = [
        "# MirrorMaker 2 (dedicated mode), rendered by deploy/mirroring.py: do not edit by hand.",
        "# Links: " + ", ".join(f"{link.source}->{link.target}" for link in topology.links),
    ]
    for key, value in settings(topology, tuning).items():
        lines.append(f"{_escape_key(key)} = {_escape_value(value)}")
    return "\n".join(lines) + "\n"


def _escape_key(key: str) -> str:
    return key.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=").replace(" ", "\\ ")


def _escape_value(value: str) -> str:
    # java.util.Properties reads `\.` as `.`: a regex's backslash must be written twice.
    return value.replace("\\", "\\\\")


# --- Strimzi ---------------------------------------------------------------------------------------


def strimzi_mirrormaker2(
    topology: Topology, target: str, tuning: Tuning, *, name: str = "cadre-mirror", replicas: int = 1
) -> dict[str, Any]:
    """Strimzi's `KafkaMirrorMaker2` (kafka.strimzi.io/v1beta2) running next to `target`: every link into it.

    Each deployment runs its own: the links into it (from its children, upward, and
    from its parent, downward), with the settings `properties` gives the local launcher.
    """
    inbound = [link for link in topology.links if link.target == target]
    if not inbound:
        msg = f"no link leads into {target}"
        raise ValueError(msg)
    flat = settings(topology, tuning)
    worker = {
        key: flat[key]
        for key in (
            "config.storage.replication.factor",
            "offset.storage.replication.factor",
            "status.storage.replication.factor",
            "offset.storage.partitions",
            "status.storage.partitions",
        )
    } | {"offset.flush.interval.ms": str(tuning.offset_flush_ms)}
    if tuning.exactly_once:
        worker["exactly.once.source.support"] = "enabled"
    connector = {
        key: flat[key]
        for key in (
            "replication.factor",
            "refresh.topics.interval.seconds",
            "sync.topic.configs.enabled",
            "sync.topic.acls.enabled",
            "emit.offset-syncs.enabled",
            "replication.policy.class",
        )
    }
    names = sorted({target} | {link.source for link in inbound})
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaMirrorMaker2",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "mirrormaker2", "app.kubernetes.io/part-of": "cadre-pool"},
        },
        "spec": {
            "replicas": replicas,
            "connectCluster": target,
            "clusters": [
                {"alias": alias, "bootstrapServers": topology.clusters[alias]}
                | ({"config": worker} if alias == target else {})
                for alias in names
            ],
            "mirrors": [
                {
                    "sourceCluster": link.source,
                    "targetCluster": link.target,
                    "topicsPattern": link.pattern(),
                    "sourceConnector": {"tasksMax": 1, "config": connector},
                    "heartbeatConnector": {
                        "config": {
                            "heartbeats.topic.replication.factor": flat["heartbeats.topic.replication.factor"],
                            "emit.heartbeats.interval.seconds": flat["emit.heartbeats.interval.seconds"],
                        }
                    },
                }
                for link in inbound
            ],
            "resources": {"requests": {"cpu": "250m", "memory": "768Mi"}, "limits": {"memory": "1Gi"}},
            "jvmOptions": {"-Xms": "256m", "-Xmx": "384m"},
        },
    }


# --- The checked-in examples -----------------------------------------------------------------------

COMPOSE_PROPERTIES: Final = _REPO / "deploy" / "compose" / "mirrormaker" / "mm2.properties"
K8S_MANIFEST: Final = _REPO / "deploy" / "k8s" / "overlays" / "example" / "mirrormaker2.yaml"

COMPOSE_TOPOLOGY: Final = Topology.tree({"city": "city-kafka:9092", "county": "county-kafka:9092"}, {"county": "city"})
"""deploy/compose/mirror.yaml: a city's compose project and one of its counties', linked."""
K8S_TOPOLOGY: Final = Topology.tree(
    {
        "province-qs": "cadre-kafka-kafka-bootstrap.kafka.svc:9092",
        "city-bh": "cadre-kafka-kafka-bootstrap.kafka.city-bh.example.org:9092",
    },
    {"city-bh": "province-qs"},
)
"""The example overlay's province and one of its cities (its own cluster, reached over the network)."""
K8S_TUNING: Final = Tuning(replication_factor=-1, refresh_topics_seconds=60)


def rendered_examples() -> dict[Path, str]:
    """The checked-in files this module renders, and what they must contain."""
    manifest = strimzi_mirrormaker2(K8S_TOPOLOGY, "province-qs", K8S_TUNING)
    header = (
        "# MirrorMaker 2 next to the province's Kafka (Strimzi): what its city sends up. Every deployment runs\n"
        "# one for the links into it (a city's also pulls the province's directives down); see docs/operations.md.\n"
        "# Rendered by `python -m deploy.mirroring` from deploy/mirroring.py: do not edit by hand.\n"
    )
    return {
        COMPOSE_PROPERTIES: properties(COMPOSE_TOPOLOGY, Tuning()),
        K8S_MANIFEST: header + yaml.safe_dump(manifest, sort_keys=False, width=120),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the examples, or (`--check`) exit 1 when a checked-in one differs."""
    parser = argparse.ArgumentParser(prog="python -m deploy.mirroring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered_examples().items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(_REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            sys.stdout.write(f"wrote {path.relative_to(_REPO)}\n")
    if stale:
        sys.stderr.write(f"stale, run `python -m deploy.mirroring`: {', '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
