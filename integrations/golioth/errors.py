"""What can go wrong talking to Golioth, one class per thing a caller handles differently."""

from __future__ import annotations

import unicodedata


class GoliothError(Exception):
    """A Golioth call failed; `status` is the HTTP status when Golioth answered at all."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(GoliothError):
    """401: the key is wrong, revoked or expired."""


class PermissionDeniedError(GoliothError):
    """403: the key is valid but not for this project (keys are project-scoped)."""


class NotFoundError(GoliothError):
    """404: unknown path, project or device."""


class RateLimitedError(GoliothError):
    """429, still after every retry."""


class UnavailableError(GoliothError):
    """5xx, timeouts or unreachable, still after every retry."""


class MalformedResponseError(GoliothError):
    """Golioth answered, but not with JSON we can read (truncated, garbled, wrong envelope)."""


class InconsistentWindowError(GoliothError):
    """A stream window kept moving while it was paged, through every re-read (see window.py)."""


class CountsUnsupportedError(GoliothError):
    """Golioth answered the count query with rows that carry no count (it ignored `agg`)."""


# Vendor statuses map through a table, not an if-chain; anything else 5xx is "unavailable".
_STATUS_ERRORS: dict[int, tuple[type[GoliothError], str]] = {
    401: (
        AuthenticationError,
        "Golioth rejected the API key (401): check the key is valid and not expired",
    ),
    403: (
        PermissionDeniedError,
        "Golioth refused the API key for project {project} (403): the key is not allowed "
        "there or belongs to another project",
    ),
    404: (NotFoundError, "Golioth has no such resource (404): {what}"),
    429: (RateLimitedError, "Golioth is rate-limiting requests (429): {what}"),
}


def error_for_status(
    status: int, *, what: str, project_id: str, golioth_message: str = ""
) -> GoliothError:
    if status in _STATUS_ERRORS:
        cls, template = _STATUS_ERRORS[status]
    elif 300 <= status < 400:
        cls, template = (
            GoliothError,
            (
                "Golioth answered with a redirect ({status}) for {what}: gsync never follows "
                "redirects, so the API key stays with the API host; check the API base URL"
            ),
        )
    elif status >= 500:
        cls, template = UnavailableError, "Golioth is unavailable ({status}): {what}"
    else:
        cls, template = GoliothError, "Golioth refused the request ({status}): {what}"
    message = template.format(status=status, what=what, project=project_id)
    if golioth_message:
        message += f" (Golioth said: {golioth_message})"
    return cls(message, status=status)


def remote_text(value: object, *, limit: int) -> str:
    """Text from a remote answer, fit to show staff: only a string, no control, format (bidi
    override, zero-width) or private-use characters, whitespace collapsed, at most `limit`
    characters. Anything else is dropped: a hostile answer must not write our messages."""
    if not isinstance(value, str):
        return ""
    head = value[: limit * 4]
    text = " ".join(
        "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in head).split()
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
