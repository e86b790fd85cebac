"""The selection service: leadership teams, posts and quotas, successors and readiness, appointments out of the pool."""
