"""Failed webhook authentication, counted per source address in Django's cache.

After GSYNC_WEBHOOK_AUTH_FAILURES failures within GSYNC_WEBHOOK_AUTH_WINDOW seconds, the address
gets 429 for the rest of the window for every request that fails authentication: each further guess
costs a constant-time compare and one cache read, and is neither counted nor logged. A request with
the right secret is always served, so nobody who shares Golioth's egress addresses can block
Golioth's deliveries by guessing. The count is per address *and* integration (unknown tokens share
one scope): Golioth sends every project's pipelines from the same few addresses, and one
misconfigured pipeline must not block another integration's deliveries.

Logged as a count per window, never a line per attempt: the window's first failure, then the
count when it reaches the threshold.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("integrations.push.view")

KEY_PREFIX = "gsync:webhook-auth"


def _key(address: str, scope: str) -> str:
    return f"{KEY_PREFIX}:{address}:{scope}"


def is_blocked(address: str, *, scope: str) -> bool:
    """Whether `address` has used up its failures in `scope` (an integration pk, or `unknown`)."""
    return (cache.get(_key(address, scope)) or 0) >= settings.GSYNC_WEBHOOK_AUTH_FAILURES


def count_failure(address: str, *, scope: str, what: str) -> int:
    """Count one failure (`what`: how it failed, for the log line); returns the window's count."""
    window = settings.GSYNC_WEBHOOK_AUTH_WINDOW
    key = _key(address, scope)
    # add() starts a window only when none is running; incr() keeps the window's expiry.
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window ended between add() and incr(): this failure starts the next one.
        cache.add(key, 1, timeout=window)
        count = 1
    threshold = settings.GSYNC_WEBHOOK_AUTH_FAILURES
    if count == 1:
        logger.warning(
            "webhook: %s from %s; further failures from it are counted for %s s, not logged",
            what,
            address,
            window,
        )
    elif count == threshold:
        logger.warning(
            "webhook: %s failed authentications from %s for %s within %s s: answering 429 "
            "until the window ends",
            count,
            address,
            "unknown tokens" if not scope.isdigit() else f"integration {scope}",
            window,
        )
    return count
