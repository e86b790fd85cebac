"""Where the deployment tools find the repository and keep what they download or build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]


RUN_FILES: Final = REPO / ".cache"
"""This checkout's own files of a run (a compose run's generated secrets, bench worktrees): never shared."""


def cache_root() -> Path:
    """What is downloaded or built once and shared by every checkout on the machine (ADR 0040).

    `$CADRE_CACHE_DIR`, else `$XDG_CACHE_HOME/cadre-pool`, else `~/.cache/cadre-pool`: the
    JVM servers' jars, Keycloak's distribution, the Go tools, the Debian root, the private
    Docker engine's images. Like pip's and Maven's caches, everything in it is pinned by
    version or hash, so a fresh clone reuses it as it is; a fresh machine fills it once.
    """
    override = os.environ.get("CADRE_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cadre-pool"
