"""Topic names. Every service publishes its own events to one topic, keyed by cadre id."""

from __future__ import annotations

REGISTRY = "registry.events"
TRAINING = "training.events"
ASSESSMENT = "assessment.events"
NOTIFY = "notify.events"
AUDIT = "audit.events"

ALL = (REGISTRY, TRAINING, ASSESSMENT, NOTIFY, AUDIT)

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
