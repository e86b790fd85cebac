"""The sync service: multi-level sync between deployments (ADR 0010)."""
