"""Kinds of failure with meaning. Domain exceptions subclass one; the edge maps kinds to HTTP.

Pure Python, so any `domain.py` may import it.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses. `code` is a stable slug for the problem `type` URI."""

    code = "domain-error"
    title = "Request refused"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Invalid(DomainError):
    """The input is well-formed but breaks a rule (maps to 422 with the failing field)."""

    code = "validation-error"
    title = "Invalid request"


class Unauthorized(DomainError):
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class TooLarge(DomainError):
    """A body or file past a size limit (413)."""

    code = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(DomainError):
    """Content of a type the resource does not take (415)."""

    code = "unsupported-media-type"
    title = "Unsupported media type"
