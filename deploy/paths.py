"""Where the deployment tools find the repository and keep what they download or build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]


def cache_root() -> Path:
    """`<repo>/.cache`, or `$CADRE_CACHE_DIR`."""
    override = os.environ.get("CADRE_CACHE_DIR")
    return Path(override) if override else REPO / ".cache"
