"""Secrets kept out of log lines: a webhook URL's token and every query-string value.

The token in `/webhooks/golioth/<token>/` is half of a webhook's credentials, and Django's request
logger (`Bad Request: /webhooks/golioth/...`), runserver's and gunicorn's access logs all write the
path. Query-string values are redacted whatever their name: gsync takes no secret there, so one
that arrives is a sender's mistake, and a name does not say whether a value is secret.
`RedactSecrets` is a logging filter (gsync/settings.py LOGGING); gunicorn's access log goes through
gsync.gunicorn_logger, which uses the same rule.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

REDACTED = "[redacted]"
# A header whose name holds any of these is secret (Authorization, X-Gsync-Secret, X-Api-Key,
# Cookie, Proxy-Authorization...): never stored, shown or logged.
SECRET_NAME_WORDS = ("secret", "token", "key", "auth", "cookie", "password")
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/golioth/)[^/?#\s\"']*")
# A path as log lines hold it; the servers route it percent-decoded, so it is judged decoded.
_PATH = re.compile(r"/[^\s?#\"']*")
# A path's query string (`/x/?a=1&b`), and within it each value: names are kept.
_QUERY = re.compile(r"(/[^\s?\"']*\?)([^\s\"'#]*)")
_QUERY_ITEM = re.compile(r"[^&;]+")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_NAME_WORDS)


def redact(text: str) -> str:
    """`text` with webhook tokens and query-string values replaced by [redacted]."""
    if "golioth" in text or "%" in text:
        text = _PATH.sub(_redact_path, text)
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    return text


def _redact_path(match: re.Match[str]) -> str:
    path = match[0]
    decoded = unquote(path) if "%" in path else path
    if "/webhooks/golioth/" not in decoded:
        return path
    return _WEBHOOK_TOKEN.sub(rf"\g<1>{REDACTED}", decoded)


def _redact_query(match: re.Match[str]) -> str:
    return match[1] + _QUERY_ITEM.sub(_redact_item, match[2])


def _redact_item(item: re.Match[str]) -> str:
    # `name=value` keeps its name; a bare `?value` may be the secret itself.
    name, equals, _ = item[0].partition("=")
    return f"{name}={REDACTED}" if equals else REDACTED


class RedactSecrets(logging.Filter):
    """Rewrites each record's message (and its traceback text) through `redact`; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
