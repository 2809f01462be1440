"""The push path: Golioth Pipelines POST each reading to `/webhooks/golioth/<token>/`.

dj-stripe's pattern: every authenticated request is stored as a `WebhookDelivery` first (committed
on its own), then processed inside `atomic()` by integrations.push.deliveries, so a failure rolls
the work back while the delivery row keeps the error and traceback for a re-process. The view is
non-atomic for that reason.

Activity: each request finds (or adds) its minute's `webhook_received` entry, and does nothing
more with it; the dispatcher fills in its counts from the minute's deliveries once it is over
(integrations.push.deliveries). A fleet pushing every few seconds would otherwise write thousands of
entries an hour and bury the sync entries staff look for; every delivery is still kept, one by
one, in `webhook_deliveries`.

Queued (the integration's `webhookQueued`, the default): the delivery is stored `queued` in the
request's one INSERT and answered 202; an ingest worker stores its reading (integrations.push.
queue). Synchronous: stored, then processed before the answer, which carries the counts; on
PostgreSQL the common case is stored, processed and committed in one statement (integrations.push.
one_statement), the rest as dj-stripe does it, above. What is plainly not a reading (refused
above, or by the parser) is answered at once in both modes.

What the sender gets back (every answer but HEAD's is JSON):
  202 {"queued": id}                  queued for an ingest worker (queued mode)
  200 {"stored": n, "duplicates": m}  stored, or already stored (legacy non-stream events and
                                      paths not in mirroredPaths add "ignored": why, nothing
                                      stored); HEAD answers 200 for any token
  202 {..., "rejected": why}          kept but not stored (unknown device while the integration
                                      does not add devices, another project): a retry would not
                                      change that, so it is not an error Golioth would resend;
                                      staff re-process it after a settings change
  400 {"error": one line}             the body is not a reading (malformed JSON/CBOR, a list...)
  401 / 404                           wrong or missing secret / unknown token or webhooks off;
                                      nothing kept but a counter and a log line per window
  429 + Retry-After                   too many of those from this address lately
                                      (integrations.push.auth_throttle)
  405                                 any method but POST and HEAD
  413                                 body over GSYNC_WEBHOOK_MAX_BYTES (kept without its body);
                                      413 {..., "rejected": why}: its reading's JSON is over
                                      GSYNC_MAX_READING_BYTES (kept, re-processable)
  415                                 neither JSON nor CBOR
  500 / 503 + Retry-After             a bug (traceback kept) / the database failed, or is too slow
                                      to answer within GSYNC_WEBHOOK_DB_TIMEOUT
                                      (integrations.push.backpressure): nothing stored but a
                                      synchronous delivery's row; the pull fetches the reading
                                      if the sender does not retry
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from gsync.redaction import REDACTED, is_secret_name
from integrations.golioth.webhook_payloads import UNSTORABLE_TEXT
from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push import auth_throttle, backpressure
from integrations.push.deliveries import (
    DeliveryResult,
    answer_status,
    conclude_delivery,
    insert_delivery,
    process_delivery,
    read_delivery,
)
from integrations.push.minutes import forget_minute_entries, webhook_minute_entry
from integrations.push.one_statement import store_at_once

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
RETRY_AFTER_SECONDS = 30
# The throttle's one scope for every token that is no integration's.
UNKNOWN_TOKENS = "unknown-tokens"
# What models.new_webhook_token makes (URL-safe base64, at most the column's 64 characters).
# Anything else is not looked up: PostgreSQL refuses a NUL in a query parameter outright.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# --- the view ------------------------------------------------------------------------------------


@csrf_exempt
@transaction.non_atomic_requests
def golioth_webhook(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "HEAD":
        # A health probe: answers the same for every token, so it tells nothing about them.
        return HttpResponse(status=200)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST", "HEAD"])
    try:
        with backpressure.waiting_for_the_database():
            return _receive(request, token)
    except backpressure.OverloadedError as exc:
        # Logged once per slow period (integrations.push.backpressure), not once a request.
        forget_minute_entries()  # as after any database error
        return _counted_not_logged(_unavailable(f"{exc}, retry later"))
    except DatabaseError:
        logger.exception("webhook: database unavailable, answering 503 so the sender retries")
        forget_minute_entries()
        return _unavailable("database unavailable, retry later")


def _unavailable(message: str) -> HttpResponse:
    response = _error(503, message)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _receive(request: HttpRequest, token: str) -> HttpResponse:
    now = timezone.now()
    remote_addr = _remote_addr(request)
    address = remote_addr or "unknown address"
    integration = _find_integration(token)
    scope = str(integration.pk) if integration else UNKNOWN_TOKENS
    # The secret is checked first: a guesser sharing Golioth's egress address must not get
    # Golioth's own deliveries throttled. Only failures are counted and throttled.
    if integration is None or not _authenticated(request, integration):
        if auth_throttle.is_blocked(address, scope=scope):
            response = _error(429, "too many failed authentications, retry later")
            response["Retry-After"] = str(settings.GSYNC_WEBHOOK_AUTH_WINDOW)
            return _counted_not_logged(response)
        if integration is None:
            what = "a request with an unknown token"
            auth_throttle.count_failure(address, scope=scope, what=what)
            return _counted_not_logged(_error(404, "not found"))
        _count_rejection(request, integration, address)
        return _counted_not_logged(_error(401, "missing or wrong secret"))
    try:
        body, unreadable = read_body(request, limit=settings.GSYNC_WEBHOOK_MAX_BYTES), ""
    except UnreadableBody as exc:
        body, unreadable = None, str(exc)
    headers, unstorable = stored_headers(request)
    delivery = new_delivery(
        integration=integration,
        request=request,
        body=body,
        received_at=now,
        headers=headers,
        remote_addr=remote_addr,
    )
    # Added even for a refused body: the minute's entry counts every delivery.
    entry_id = webhook_minute_entry(integration, at=now)
    refusal = _refusal(body=body, unreadable=unreadable, unstorable_header=unstorable)
    if integration.sync_settings.webhook_queued:
        return _queue(delivery, refusal=refusal)
    if refusal:
        insert_delivery(delivery)
        conclude_delivery(delivery, refusal, answering=True)
        return _answer(refusal)
    result = store_at_once(delivery, integration=integration, activity_id=entry_id)
    if result is None:
        if delivery.pk is None:
            # Committed before any processing: nothing a failure can lose it.
            insert_delivery(delivery)
        result = process_delivery(
            delivery, integration=integration, activity_id=entry_id, answering=True
        )
    return _answer(result)


def _refusal(
    *, body: bytes | None, unreadable: str, unstorable_header: str
) -> DeliveryResult | None:
    """The failure of a request whose body is not kept or whose headers cannot be, or None."""
    if unstorable_header:
        reason = f"header {unstorable_header[:60]} holds a NUL character or a lone surrogate"
        return DeliveryResult(Outcome.FAILED, reason=reason, failure="input")
    if body is None:
        limit = settings.GSYNC_WEBHOOK_MAX_BYTES
        too_large = f"body is larger than the {limit}-byte limit (GSYNC_WEBHOOK_MAX_BYTES)"
        if unreadable:
            return DeliveryResult(Outcome.FAILED, reason=unreadable, failure="input")
        return DeliveryResult(Outcome.FAILED, reason=f"{too_large}; not kept", failure="body-size")
    return None


def _queue(delivery: WebhookDelivery, *, refusal: DeliveryResult | None) -> HttpResponse:
    """The queued answer: one INSERT, the reading left to an ingest worker (integrations.push.
    queue). What is not a reading is told at once, as the synchronous path tells it; a body
    the parser chokes on is queued all the same, for the worker to record why."""
    verdict = refusal
    if verdict is None:
        try:
            read = read_delivery(delivery, sync_settings=delivery.integration.sync_settings)
        except Exception:
            logger.exception("webhook: could not read a delivery; queued for the worker")
        else:
            if isinstance(read, DeliveryResult):
                verdict = read
            else:
                delivery.device_external_id = read.device_external_id
    if verdict is None:
        # The worker's outcome comes later; the sender's answer is this 202.
        delivery.outcome, delivery.response_status = Outcome.QUEUED, 202
        insert_delivery(delivery)
        return JsonResponse({"queued": delivery.pk}, status=202)
    delivery.outcome, delivery.error = verdict.outcome, verdict.reason
    delivery.processed_at, delivery.attempts = timezone.now(), 1
    delivery.response_status = answer_status(verdict)
    insert_delivery(delivery)
    return _answer(verdict)


def _answer(result: DeliveryResult) -> HttpResponse:
    """The answer to a delivery's result; its status is `answer_status`, which the delivery's row
    records (integrations.push.deliveries)."""
    counts = {"stored": result.stored, "duplicates": result.duplicates}
    status = answer_status(result)
    if result.outcome in (Outcome.PROCESSED, Outcome.DUPLICATE):
        return JsonResponse(counts, status=status)
    if result.outcome == Outcome.IGNORED:
        return JsonResponse({**counts, "ignored": result.reason}, status=status)
    if result.outcome == Outcome.REJECTED:
        return JsonResponse({**counts, "rejected": result.reason}, status=status)
    if result.failure == "internal":
        return _error(status, "internal error; the delivery is kept for re-processing")
    return _error(status, result.reason)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _counted_not_logged(response: HttpResponse) -> HttpResponse:
    # Failed authentication is logged as a count per window (integrations.push.auth_throttle):
    # Django's request logger would add a line per attempt, and skips a response marked logged
    # already.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


# --- authentication, body, storage ---------------------------------------------------------------


# Per process: token -> (monotonic expiry, integration or None). The integration's webhook
# settings (secrets, on/off, mirrored paths) are read once per GSYNC_WEBHOOK_CONFIG_SECONDS, not
# once a request: a change in the admin applies within that time.
_integrations: dict[str, tuple[float, DeviceIntegration | None]] = {}
INTEGRATIONS_CACHED = 1000


def _find_integration(token: str) -> DeviceIntegration | None:
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    ttl = settings.GSYNC_WEBHOOK_CONFIG_SECONDS
    cached = _integrations.get(token)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    enabled = DeviceIntegration.objects.filter(webhook_token=token, webhook_enabled=True)
    # What a delivery needs; the sync state and the encrypted key stay in the database.
    needed = enabled.only("project_id", "settings", "webhook_token", "webhook_secrets")
    integration = next(iter(needed[:1]), None)
    if ttl > 0:
        if len(_integrations) >= INTEGRATIONS_CACHED:
            _integrations.clear()
        _integrations[token] = (time.monotonic() + ttl, integration)
    return integration


def forget_integrations() -> None:
    _integrations.clear()


def _authenticated(request: HttpRequest, integration: DeviceIntegration) -> bool:
    """The pipeline sends the secret raw in Authorization; `Bearer` and X-Gsync-Secret work too."""
    authorization = request.headers.get("Authorization", "").strip()
    candidates = [authorization, request.headers.get("X-Gsync-Secret", "").strip()]
    if authorization[:7].lower() == "bearer ":
        candidates.append(authorization[7:].strip())
    matched = False
    for candidate in candidates:
        # Every candidate is compared (no short cut), in constant time, against every secret.
        matched |= integration.check_webhook_secret(candidate)
    return matched


def _count_rejection(request: HttpRequest, integration: DeviceIntegration, address: str) -> None:
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        webhook_rejected_count=F("webhook_rejected_count") + 1
    )
    sent = "a wrong" if _has_secret_header(request) else "no"
    what = f"rejected a request with {sent} secret for integration {integration.pk}"
    auth_throttle.count_failure(address, scope=str(integration.pk), what=what)


def _has_secret_header(request: HttpRequest) -> bool:
    return bool(request.headers.get("Authorization") or request.headers.get("X-Gsync-Secret"))


class UnreadableBody(ValueError):
    """The server could not read the body (a malformed chunked encoding, a client gone)."""


def read_body(request: HttpRequest, *, limit: int) -> bytes | None:
    """The body, or None when it is over `limit`: refused by Content-Length before any read,
    and never read past `limit` + 1 bytes when the length is not announced (chunked).
    UnreadableBody when the server's stream fails."""
    try:
        return _read_limited(request, limit=limit)
    except Exception as exc:
        # The WSGI server's own errors (gunicorn's InvalidChunkSize, NoMoreData...) have no
        # common base but Exception: all of them mean the request, not gsync, is broken.
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        reason = f"body could not be read (malformed chunked encoding?): {detail}"
        raise UnreadableBody(reason) from None


def _read_limited(request: HttpRequest, *, limit: int) -> bytes | None:
    try:
        announced = int(request.META.get("CONTENT_LENGTH") or -1)
    except ValueError:
        announced = -1
    if announced > limit:
        return None
    if announced < 0 and request.META.get("wsgi.input_terminated"):
        # Django reads nothing without a Content-Length; the server says the stream ends.
        body = request.META["wsgi.input"].read(limit + 1)
    else:
        body = request.read(limit + 1)
    return None if len(body) > limit else body


def stored_headers(request: HttpRequest) -> tuple[dict[str, str], str]:
    """The request's headers as a delivery keeps them (secrets redacted, `_storable`), and the
    name of the first header (or Content-Type) that `_storable` had to change, or ""."""
    stored, unstorable = {}, ""
    for name, value in request.headers.items():
        kept_name, kept_value = _storable(name), _storable(value)
        if not unstorable and (kept_name != name or kept_value != value):
            unstorable = kept_name
        stored[kept_name] = REDACTED if is_secret_name(name) else kept_value
    content_type = _content_type(request)
    if not unstorable and _storable(content_type) != content_type:
        unstorable = "Content-Type"
    return stored, unstorable


def _storable(text: str) -> str:
    # PostgreSQL's jsonb and text hold no NUL and no lone surrogate: the row would not be kept.
    return UNSTORABLE_TEXT.sub("\ufffd", text)


def _content_type(request: HttpRequest) -> str:
    return request.META.get("CONTENT_TYPE", "")


def _remote_addr(request: HttpRequest) -> str | None:
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def new_delivery(
    *,
    integration: DeviceIntegration,
    request: HttpRequest,
    body: bytes | None,
    received_at: datetime,
    headers: dict[str, str],
    remote_addr: str | None,
) -> WebhookDelivery:
    """The request as a delivery row, not saved yet: `headers` as `stored_headers` keeps them
    (secrets redacted); a body over the limit is kept without it."""
    return WebhookDelivery(
        integration=integration,
        received_at=received_at,
        headers=headers,
        body=body or b"",
        content_type=_storable(_content_type(request))[:200],
        remote_addr=remote_addr,
    )
