"""The MirrorMaker 2 topology: which topic goes where under which name, and the configuration rendered from it."""

from __future__ import annotations

import re

import pytest

from contracts import topics
from deploy import mirroring
from deploy.mirroring import Link, Topology, Tuning, remote_topic

CLUSTERS = {"province": "p:9092", "city": "c:9092", "county": "k:9092"}
PARENTS = {"city": "province", "county": "city"}


def three_levels(namespace: str = "") -> Topology:
    return Topology.tree(CLUSTERS, PARENTS, namespace=namespace)


def test_each_child_sends_its_own_events_and_what_it_received_one_hop_up() -> None:
    topology = three_levels("ns.")
    up = (*(f"ns.{topic}" for topic in topics.ALL), *(f"ns.{topic}" for topic in topics.RECEIVED))
    assert "ns.registry.received" in up
    assert "ns.sync.events" in up  # directive outcomes go up with the rest of the sync service's events
    assert topology.link("county", "city").topics == up
    assert topology.link("city", "province").topics == up  # the county's events reach it as the city's `received`


def test_each_parent_sends_its_sync_events_one_hop_down() -> None:
    topology = three_levels("ns.")
    assert topology.link("province", "city").topics == ("ns.sync.events",)
    assert topology.link("city", "county").topics == ("ns.sync.events",)
    assert {(link.source, link.target) for link in topology.links} == {
        ("county", "city"),
        ("city", "province"),
        ("province", "city"),
        ("city", "county"),
    }


def test_remote_names_follow_the_default_replication_policy() -> None:
    assert remote_topic("county", "ns.registry.events") == "county.ns.registry.events"


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: Topology.tree({"City": "a", "county": "b"}, {"county": "City"}), "is not"),
        (lambda: Topology.tree(CLUSTERS, {"county": "nowhere"}), "unknown deployment"),
        (lambda: Topology.tree(CLUSTERS, {"city": "county", "county": "city"}), "cycle"),
        # a deployment named like a topic segment would be read as a hop (or dropped as a cycle)
        (lambda: Topology.tree({"registry": "a", "city": "b"}, {"registry": "city"}), "segments of topic names"),
        (lambda: Topology.tree(CLUSTERS, PARENTS, namespace="city."), "segments of topic names"),
        (lambda: Topology(CLUSTERS, (Link("county", "city", ("city.x.events",)),)), "drop 'city.x.events' as a cycle"),
        (lambda: Topology(CLUSTERS, (Link("county", "county", ("x.events",)),)), "into itself"),
        (lambda: Topology(CLUSTERS, (Link("county", "city", ()),)), "no topics"),
    ],
)
def test_a_topology_that_could_not_work_is_refused(build: object, problem: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=problem):
        build()


def test_the_properties_file_keeps_regex_backslashes_and_the_patterns_are_exact() -> None:
    topology = three_levels("t1.")
    text = mirroring.properties(topology, Tuning())
    assert r"county->city.topics = t1\\.registry\\.events|" in text  # `\.` alone would collapse to `.` when read
    flat = mirroring.settings(topology, Tuning())
    assert all(f"{key.replace(':', chr(92) + ':')} = " in text for key in flat)  # every setting is written
    pattern = re.compile(flat["city->province.topics"])
    assert pattern.fullmatch("t1.registry.events")
    assert not pattern.fullmatch("countyXt1.registry.events")  # the dots are literal
    assert not pattern.fullmatch("t1.registry.events.dlq")  # dead letters stay home
    assert pattern.fullmatch("t1.registry.received")
    assert not pattern.fullmatch("county.t1.registry.events")  # nothing is forwarded raw (ADR 0010)


def test_the_settings_keep_mirrormaker_inside_our_single_brokers() -> None:
    flat = mirroring.settings(three_levels(), Tuning())
    for key, value in flat.items():
        if key.endswith("replication.factor"):
            assert value == "1", key
    for cluster in CLUSTERS:
        # worker settings count only per target cluster; a top-level flush interval would be ignored
        assert flat[f"{cluster}.offset.flush.interval.ms"] == "1000"
        assert f"{cluster}.exactly.once.source.support" not in flat
    assert flat["emit.checkpoints.enabled"] == flat["sync.group.offsets.enabled"] == "false"
    assert flat["sync.topic.acls.enabled"] == flat["emit.offset-syncs.enabled"] == "false"
    assert flat["refresh.topics.interval.seconds"] == "5"
    assert flat["topics"] == ""  # only the flows' own lists replicate anything
    # heartbeats only where a link needs them: into each link's source, for the link to carry
    assert flat["emit.heartbeats.enabled"] == "false"
    assert {k for k in flat if "emit.heartbeats.enabled" in k} == {
        "emit.heartbeats.enabled",
        "city->province.emit.heartbeats.enabled",
        "province->city.emit.heartbeats.enabled",
        "city->county.emit.heartbeats.enabled",
        "county->city.emit.heartbeats.enabled",
    }
    eos = mirroring.settings(three_levels(), Tuning(exactly_once=True, rest_port=4567, transaction_timeout_ms=10_000))
    assert eos["city.exactly.once.source.support"] == "enabled"
    assert eos["city.producer.transaction.timeout.ms"] == "10000"
    assert eos["listeners"] == "http://127.0.0.1:4567"


def test_strimzi_runs_the_links_into_one_deployment_with_the_same_settings() -> None:
    manifest = mirroring.strimzi_mirrormaker2(three_levels(), "city", Tuning(replication_factor=-1))
    spec = manifest["spec"]
    assert spec["connectCluster"] == "city"
    assert [(m["sourceCluster"], m["targetCluster"]) for m in spec["mirrors"]] == [
        ("province", "city"),
        ("county", "city"),
    ]
    county = spec["mirrors"][1]
    assert county["topicsPattern"] == three_levels().link("county", "city").pattern()
    assert county["sourceConnector"]["config"]["replication.factor"] == "-1"
    (target,) = [c for c in spec["clusters"] if c["alias"] == "city"]
    assert target["config"]["offset.flush.interval.ms"] == "1000"
    with pytest.raises(ValueError, match="no link leads into"):
        mirroring.strimzi_mirrormaker2(Topology.tree(CLUSTERS, {"county": "city"}), "province", Tuning())


def test_sibling_counties_each_have_their_own_links() -> None:
    clusters = {"province": "p", "city": "c", "county-a": "a", "county-b": "b"}
    topology = Topology.tree(clusters, {"city": "province", "county-a": "city", "county-b": "city"})
    assert {(link.source, link.target) for link in topology.links if link.target == "city"} == {
        ("county-a", "city"),
        ("county-b", "city"),
        ("province", "city"),
    }
    assert not any(link.source == "county-a" and link.target == "county-b" for link in topology.links)
