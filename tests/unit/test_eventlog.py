"""The event log contract against the in-memory log (the same suite runs against PostgreSQL in
tests/integration/test_event_store.py)."""

from __future__ import annotations

import pytest

from runtime.eventlog import EventLog, InMemoryEventLog
from tests.eventlog_contract import EventLogContract


class TestInMemoryEventLog(EventLogContract):
    @pytest.fixture
    def log(self) -> EventLog:
        return InMemoryEventLog(source="registry")
