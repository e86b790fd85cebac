"""Which deployment owns what: a deployment's place among the levels of the organization (ADR 0010).

A deployment (one full stack) owns the subtree under its root unit, except the subtrees of
its child deployments. Every stream has exactly one owning deployment: the one whose part
of the tree holds the stream's org path, unless the stream was handed over explicitly
(`StreamHandedOver`, kept in `stream_owners`). Only the owner appends to a stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel, ConfigDict

from contracts.envelope import OrgPath, in_subtree

SYSTEM_PATH: Final = "system"
"""The org path of a deployment's own records (signed checkpoints): always its own."""


class Child(BaseModel):
    """A deployment directly below this one, as this one's settings name it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: OrgPath
    """The org path of the unit at the child's root."""
    public_key: str
    """Its Ed25519 key (base64 of the 32 raw bytes): what its signed checkpoints and bundles are verified with."""


@dataclass(frozen=True)
class Topology:
    """This deployment, its root, its parent and its children."""

    deployment: str
    root: str = ""
    """Empty: the whole organization (a single deployment)."""
    parent: str = ""
    children: Mapping[str, Child] = field(default_factory=dict)

    @property
    def single(self) -> bool:
        """Whether this deployment stands alone (no level above or below it)."""
        return not self.parent and not self.children

    def owner_of(self, org_path: str) -> str | None:
        """The deployment that owns `org_path` by the tree: None for this one, else a child's name or the parent's.

        A path below a child's root belongs to that child (or to a deployment below it, which the
        child answers for); a path outside this deployment's root belongs to the levels above.
        """
        if org_path == SYSTEM_PATH:
            return None
        if self.root and not in_subtree(org_path, self.root):
            return self.parent or "a deployment outside this one's subtree"
        for name, child in self.children.items():
            if in_subtree(org_path, child.root):
                return name
        return None
