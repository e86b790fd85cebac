"""Topic names. Every service publishes its own events to one topic, keyed by cadre id.

A deployment that receives other deployments' events (multi-level sync) passes them on,
verified, on `<service>.received`, one topic per service they came from (ADR 0010).
"""

from __future__ import annotations

REGISTRY = "registry.events"
TRAINING = "training.events"
ASSESSMENT = "assessment.events"
NOTIFY = "notify.events"
AUDIT = "audit.events"
SYNC = "sync.events"
SELECTION = "selection.events"

ALL = (REGISTRY, TRAINING, ASSESSMENT, NOTIFY, AUDIT, SYNC, SELECTION)
"""Each service's own events."""

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def service_topic(service: str) -> str:
    """The topic a service publishes to."""
    return f"{service}.events"


def namespaced(namespace: str, topic: str) -> str:
    """`topic` inside a namespace (a prefix that isolates tests or tenants on one cluster)."""
    return f"{namespace}{topic}"


def received(topic: str) -> str:
    """Where a deployment passes on, verified, the events of `topic` it received from other deployments."""
    return topic.removesuffix(".events") + ".received"


RECEIVED = tuple(received(topic) for topic in ALL)
