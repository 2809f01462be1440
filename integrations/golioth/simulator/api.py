"""The simulator's endpoints: route a request, check the key and project, answer as Golioth does."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

from integrations.golioth.payloads import PayloadError, parse_time
from integrations.golioth.simulator.micros import to_micros
from integrations.golioth.simulator.query import QueryError, parse_query, run_query
from integrations.golioth.simulator.store import (
    DeviceQuery,
    SimStore,
    device_json,
)

MAX_PER_PAGE = 100

_P = r"/v1/projects/(?P<project>[^/]+)"
_D = r"/devices/(?P<device>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], frozenset[str]]] = [
    ("project", re.compile(rf"^{_P}/?$"), frozenset({"GET"})),
    ("devices", re.compile(rf"^{_P}/devices/?$"), frozenset({"GET"})),
    ("device", re.compile(rf"^{_P}{_D}/?$"), frozenset({"GET"})),
    ("stream", re.compile(rf"^{_P}/stream/?$"), frozenset({"GET", "POST"})),
    ("device_stream", re.compile(rf"^{_P}{_D}/stream/?$"), frozenset({"GET", "POST"})),
    ("state", re.compile(rf"^{_P}{_D}/data(?:/(?P<path>.*))?$"), frozenset({"GET"})),
]
_METHODS = {kind: methods for kind, _, methods in _ROUTES}

# gRPC status codes, as the gateway puts them in error bodies.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNIMPLEMENTED, UNAUTHENTICATED = 3, 5, 7, 12, 16


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Context:
    store: SimStore
    project_id: str
    api_key: str
    method: str
    headers: Message  # case-insensitive, as http.server gives it
    query: str
    body: bytes
    # Stream replies carry `total` (OpenAPI); False: leave it out, as no capture shows it.
    stream_total: bool = True


def route(path: str) -> tuple[str, dict[str, str]]:
    """The endpoint kind for a path ("unknown" when none) and its path arguments."""
    for kind, pattern, _ in _ROUTES:
        match = pattern.match(path)
        if match:
            return kind, {k: v for k, v in match.groupdict().items() if v is not None}
    return "unknown", {}


def error_body(code: int, message: str) -> bytes:
    return _json({"code": code, "message": message, "details": []})


def answer(ctx: Context, kind: str, args: dict[str, str]) -> tuple[int, bytes]:
    if kind == "unknown":
        return 404, error_body(NOT_FOUND, "Not Found")
    if ctx.headers.get("x-api-key") != ctx.api_key:
        return 401, error_body(UNAUTHENTICATED, "error identifying user")
    if args["project"] != ctx.project_id:
        return 403, error_body(PERMISSION_DENIED, "permission denied for this project")
    if ctx.method not in _METHODS[kind]:
        return 501, error_body(UNIMPLEMENTED, "Method Not Allowed")
    device_id = args.get("device")
    if device_id is not None and device_id not in ctx.store.devices:
        return 404, error_body(NOT_FOUND, f"device {device_id} not found")
    try:
        return 200, _HANDLERS[kind](ctx, args)
    except BadRequest as exc:
        return 400, error_body(INVALID_ARGUMENT, str(exc))


def _project(ctx: Context, args: dict[str, str]) -> bytes:
    stamp = "2025-07-08T18:00:00.000Z"
    data = {
        "id": ctx.project_id,
        "name": f"Simulated {ctx.project_id}",
        "organizationId": "sim-organization",
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    return _json({"data": data})


def _devices(ctx: Context, args: dict[str, str]) -> bytes:
    params = parse_qs(ctx.query)
    page, per_page = _paging(_first(params, "page"), _first(params, "perPage"))
    enabled = _first(params, "enabled")
    query = DeviceQuery(
        device_name=_first(params, "deviceName"),
        hardware_id=_first(params, "hardwareId"),
        tags=tuple(params.get("tags", ())),
        blueprint_id=_first(params, "blueprintId"),
        cohort_id=_first(params, "cohortId"),
        enabled=None if enabled is None else enabled.lower() == "true",
        term=_first(params, "term"),
    )
    devices = ctx.store.list_devices(query)
    chunk = devices[page * per_page : (page + 1) * per_page]
    body = {"list": [device_json(d) for d in chunk], "page": page, "perPage": per_page}
    return _json({**body, "total": len(devices)})


def _device(ctx: Context, args: dict[str, str]) -> bytes:
    return _json({"data": device_json(ctx.store.devices[args["device"]])})


def _stream(ctx: Context, args: dict[str, str]) -> bytes:
    params = _stream_params(ctx)
    device_ids = params["deviceId"]
    if "device" in args:
        device_ids = [args["device"]]
    start, end = _window(params)
    page, per_page = _paging(params.get("page"), params.get("perPage"))
    try:
        query = parse_query(params)
    except QueryError as exc:
        raise BadRequest(str(exc)) from exc
    matches = ctx.store.query(start, end, device_ids or None, params["tags"] or None)
    meta: dict[str, Any] = {"page": page, "perPage": per_page}
    if query.is_plain:
        items = ctx.store.render_page(matches, page, per_page)
        total = len(matches)
    else:
        key = (start, end, tuple(device_ids), tuple(params["tags"]), _query_key(params))
        rows = ctx.store.memo(
            key, lambda: run_query(query, ctx.store.rows(matches), ctx.store.render_time)
        )
        items = _json(rows[page * per_page : (page + 1) * per_page]).decode()
        total = len(rows)
    if ctx.stream_total:
        meta["total"] = total
    # `list` is spliced in as text: the payloads are stored as JSON already.
    return b'{"list":' + items.encode() + b"," + _json(meta)[1:]


def _query_key(params: dict[str, Any]) -> str:
    return json.dumps([params.get("query"), params.get("encodedQuery")], sort_keys=True)


def _window(params: dict[str, Any]) -> tuple[int, int]:
    """start and end are optional in the OpenAPI; so is `interval` ("8h", goliothctl's
    --interval). Without them: end = now, start = end - interval, interval 24 h (guess)."""
    end = _time_param(params, "end") if params.get("end") else to_micros(datetime.now(UTC))
    if params.get("start"):
        return _time_param(params, "start"), end
    interval = params.get("interval") or "24h"
    match = re.match(r"^(\d+)([smhd])$", str(interval).strip())
    if not match:
        raise BadRequest(f"invalid interval {interval!r}")
    seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[match[2]]
    return end - seconds * 1_000_000, end


def _state(ctx: Context, args: dict[str, str]) -> bytes:
    value = ctx.store.latest(args["device"])
    for part in (p for p in args.get("path", "").split("/") if p):
        value = value.get(part) if isinstance(value, dict) else None
    return _json({"data": value})


_HANDLERS: dict[str, Callable[[Context, dict[str, str]], bytes]] = {
    "project": _project,
    "devices": _devices,
    "device": _device,
    "stream": _stream,
    "device_stream": _stream,
    "state": _state,
}


def _stream_params(ctx: Context) -> dict[str, Any]:
    """The stream query's parameters, from the JSON body (POST) or the query string (GET)."""
    if ctx.method == "POST":
        try:
            params = json.loads(ctx.body or b"{}")
        except ValueError as exc:
            raise BadRequest("request body is not valid JSON") from exc
        if not isinstance(params, dict):
            raise BadRequest("request body must be a JSON object")
    else:
        query = parse_qs(ctx.query)
        keys = ("start", "end", "interval", "page", "perPage", "encodedQuery", "query.timeBucket")
        params = {key: _first(query, key) for key in keys}
        params |= {"deviceId": query.get("deviceId", []), "tags": query.get("tags", [])}
    for key in ("deviceId", "tags"):
        value = params.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{key} must be a list of strings")
        params[key] = value
    return params


def _time_param(params: dict[str, Any], key: str) -> int:
    value = params.get(key)
    if value is None or value == "":
        raise BadRequest(f"{key} is required")
    try:
        return to_micros(parse_time(value))
    except PayloadError as exc:
        raise BadRequest(f"invalid {key}: {exc}") from exc


def _paging(page: Any, per_page: Any) -> tuple[int, int]:
    try:
        page_n = int(page) if page not in (None, "") else 0
        per_page_n = int(per_page) if per_page not in (None, "") else MAX_PER_PAGE
    except (TypeError, ValueError) as exc:
        raise BadRequest("page and perPage must be integers") from exc
    if page_n < 0:
        raise BadRequest("page must be 0 or more")
    if not 1 <= per_page_n <= MAX_PER_PAGE:
        raise BadRequest(f"perPage must be between 1 and {MAX_PER_PAGE}")
    return page_n, per_page_n


def _first(params: dict[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
