"""Golioth's pipeline path filter: the syntax of `mirroredPaths` and the one match rule.

Golioth docs, data-routing/filters/path: a data message's path is what the device targeted with
the `/.s` prefix removed (`/sensor`). A filter matches exactly, or ends in `*` and matches every
path that starts with the characters before it (`/temp/*` matches `/temp/` and `/temp/celsius`,
not `/temp`); `*` may only be the last character; trailing slashes are stripped from both sides
of an exact comparison, never before a `*`. There is no exclusion. gsync stores patterns in that
syntax, with a leading slash, so the pipeline YAML it shows uses them verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WILDCARD = "*"
MAX_PATTERN_LENGTH = 200
# The SDK sends log lines as CBOR to `logs`; Golioth's "Default CBOR Logs" pipeline filters
# `path: "/logs"` (docs data-routing/examples/golioth-logs-cbor). Left out of the default.
LOGS_PATH = "/logs"
_UNFIT = re.compile(r"[\s\x00-\x1f\x7f]")


def normalize_pattern(value: object) -> str:
    """One pattern in its stored form (`sensor/` -> `/sensor`, `env*` -> `/env*`), or ValueError
    with a message staff can act on."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("each path pattern must be non-empty text")
    text = value.strip()
    if len(text) > MAX_PATTERN_LENGTH or _UNFIT.search(text):
        raise ValueError(f"{text[:40]!r} is too long or holds spaces or control characters")
    if WILDCARD in text[:-1]:
        raise ValueError(
            f"{text!r}: a * may only end a pattern (Golioth's path filter matches a path exactly "
            "or by the prefix before a final *)"
        )
    if text == WILDCARD:
        return text
    if not text.startswith("/"):
        text = "/" + text
    if text.endswith(WILDCARD):
        return text
    return text.rstrip("/") or "/"


def data_path(path: str) -> str:
    """A message's path as a filter sees it: a leading slash, no trailing one (`/` the root)."""
    return "/" + path.strip("/")


def pattern_matches(pattern: str, path: str) -> bool:
    """Does the stored `pattern` match the message path `path` (`sensor`, `/env/temp`)?"""
    target = data_path(path)
    if pattern.endswith(WILDCARD):
        return target.startswith(pattern[:-1])
    return target == pattern


def covering_pattern(pattern: str, others: Iterable[str]) -> str | None:
    """A pattern among `others` that already matches every path `pattern` matches, if any."""
    for other in others:
        if other == pattern or not other.endswith(WILDCARD):
            continue
        prefix = other[:-1]
        if pattern.removesuffix(WILDCARD).startswith(prefix):
            return other
    return None


def normalize_patterns(values: Iterable[object]) -> tuple[str, ...]:
    """Patterns in stored form, in their order, or ValueError naming the first bad one.

    A pattern another one covers is refused: a message matching two pipelines is delivered by
    each (docs data-routing/filters), so Golioth would store that reading twice.
    """
    patterns = tuple(dict.fromkeys(normalize_pattern(value) for value in values))
    if not patterns:
        raise ValueError("must list at least one path pattern, or be null (every path but logs)")
    for pattern in patterns:
        cover = covering_pattern(pattern, patterns)
        if cover is not None:
            raise ValueError(
                f"{pattern!r} is already covered by {cover!r}: Golioth would deliver its "
                "messages through both pipelines, twice"
            )
    return patterns
