"""Errors a command can end in; the HTTP layer turns each into a problem+json answer."""

from __future__ import annotations

from typing import Any, ClassVar


class CommandError(Exception):
    """A command was refused; nothing was changed."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(CommandError):
    """The target does not exist, or lies outside the actor's subtree (not told apart)."""

    status = 404
    title = "Not found"


class ForbiddenError(CommandError):
    """The actor's role does not allow this."""

    status = 403
    title = "Forbidden"


class UnauthorizedError(CommandError):
    """No valid actor token."""

    status = 401
    title = "Unauthorized"


class ConflictError(CommandError):
    """The state changed since the caller read it, or the target already exists."""

    status = 409
    title = "Conflict"


class GoneError(CommandError):
    """The target existed and was erased for good."""

    status = 410
    title = "Gone"


class RuleViolationError(CommandError):
    """The command breaks a domain rule (entry rules, dates, capacity, ...)."""

    status = 422
    title = "Rule violated"


class ConcurrencyError(ConflictError):
    """An append expected a stream version that is no longer current."""

    title = "Concurrent change"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, not {expected}",
            stream_id=stream_id,
            expected_version=expected,
            actual_version=actual,
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class OwnedElsewhereError(CommandError):
    """The stream is written by another deployment (multi-level sync): this one may not append to it."""

    status = 409
    title = "Owned by another deployment"

    def __init__(self, stream_id: str, owner: str) -> None:
        super().__init__(
            f"{stream_id} is owned by deployment {owner}: change it there (or send it a directive)",
            stream_id=stream_id,
            owner=owner,
        )
        self.stream_id = stream_id
        self.owner = owner


class PayloadTooLargeError(CommandError):
    """The request's body is larger than the endpoint accepts."""

    status = 413
    title = "Payload too large"
