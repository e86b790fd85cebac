"""Prometheus metrics of the runtime, labelled by service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter("cadre_events_appended", "Events appended to the event store", ["service"])
APPEND_BATCH = Histogram(
    "cadre_append_batch_commands",
    "Commands committed together in one group commit",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
RELAY_PUBLISHED = Counter("cadre_relay_published", "Events published by the outbox relay", ["service", "topic"])
RELAY_LAG = Gauge("cadre_relay_lag_events", "Committed events not yet published", ["service", "topic"])
RELAY_FAILURES = Counter(
    "cadre_relay_failures", "Relay rounds that failed and were tried again from the cursor", ["service", "topic"]
)
CONSUMED = Counter(
    "cadre_consumer_events", "Events handled by a subscriber, by outcome", ["service", "consumer", "outcome"]
)
CONSUMER_LAG = Gauge(
    "cadre_consumer_lag_messages", "Messages behind the partition's end", ["service", "consumer", "topic", "partition"]
)
CONSUMER_OUT_OF_ORDER = Counter(
    "cadre_consumer_out_of_order",
    "Records that arrived before an earlier record of their partition (applied; the gap is awaited)",
    ["service", "consumer", "topic"],
)
HANDLER_ERRORS = Counter("cadre_handler_errors", "Messages a subscriber could not handle", ["service", "consumer"])
DEAD_LETTERED = Counter("cadre_dead_lettered", "Messages sent to a dead-letter topic", ["service", "topic"])
HTTP_LATENCY = Histogram("cadre_http_request_seconds", "HTTP request latency", ["service", "method", "route", "status"])
NOTIFICATIONS = Counter(
    "cadre_notifications", "Notification delivery attempts, by channel and outcome", ["channel", "outcome"]
)
