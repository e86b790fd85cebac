"""The browser tests walk many screens, each photographed and axe-checked at two widths.

The suite's 300 s limit per test (pyproject) is for a test that hangs; a walk through every screen
of every demo person, with the session's Keycloak started in the first one's setup, takes longer
than that on a busy machine, and a limit hit mid-walk leaves its console's port held for the next.
"""

from __future__ import annotations

import pytest

WALK_LIMIT_S = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(WALK_LIMIT_S))
