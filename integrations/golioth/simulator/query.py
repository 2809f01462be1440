"""The simulator's LightDB Stream query language, as Golioth's docs describe it.

Source: golioth/docs `application-services/2-lightdb-stream/3-querying-data.md` ("Querying Stream
Data") and the OpenAPI (`goliothDeviceStreamQuery`: fields, filters, timeBucket;
`goliothQueryField`: path, alias, agg, type; `goliothQueryFilter`: path, op, value, filters).

- `fields`: `time` and `deviceId` are special (docs); python-golioth-tools sends `device_id`, so
  that name is taken too. `{"path": "*"}` puts the whole payload under `data` (golioth-api.md §3,
  confirmed). Any other path is a dot path into the payload; its key in a row is the alias, else
  the path. A path the payload lacks gives null (guess: Golioth might leave the key out).
- `agg`: avg, count, max, min, sum (docs). With any aggregate, every field that is not
  aggregated is a grouping key (docs). `count` counts rows whose value is not null; counting `*`
  counts every row (guess: the docs do not say which path counts rows).
- `type`: a conversion before aggregating (docs: "important for aggregations"): float, int,
  string (guess for the names; the docs only show float).
- `timeBucket` ("15m", "1h", "24h"): `time` rounded down to the bucket, which the docs show as
  "2021-05-06T14:45:00+00:00"; buckets aligned to the Unix epoch in UTC (guess).
- `filters`: `=` and `<>` (a list value: IN / NOT IN; `<>` null: "not null"), `<`, `<=`, `>`,
  `>=` compare as floats, `and` / `or` nest (docs).
- Aggregated rows come newest bucket first, like readings (guess).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from integrations.golioth.simulator.micros import from_micros

AGGREGATES = ("avg", "count", "max", "min", "sum")
_BUCKET = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DEVICE_PATHS = ("deviceId", "device_id")


class QueryError(ValueError):
    """The query is not one Golioth would take: answered 400."""


@dataclass(frozen=True)
class Field:
    path: str
    key: str
    agg: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class Query:
    fields: tuple[Field, ...]
    filters: tuple[Any, ...]
    bucket_micros: int | None

    @property
    def aggregated(self) -> bool:
        return any(f.agg for f in self.fields)

    @property
    def is_plain(self) -> bool:
        """time, deviceId and the whole payload, unfiltered: the simulator's fast path."""
        paths = {(f.path, f.key) for f in self.fields}
        return (
            not self.filters
            and self.bucket_micros is None
            and not self.aggregated
            and paths in ({("time", "time"), ("deviceId", "deviceId"), ("*", "data")},)
        )


DEFAULT_FIELDS = (Field("time", "time"), Field("deviceId", "deviceId"), Field("*", "data"))


def parse_query(params: dict[str, Any]) -> Query:
    """The query of a stream request: the `query` object, or `encodedQuery` (a JSON string, as
    python-golioth-tools sends it); `timeBucket` inside the query or as `query.timeBucket`."""
    raw = params.get("query")
    if raw is None and params.get("encodedQuery") not in (None, ""):
        try:
            raw = json.loads(params["encodedQuery"])
        except (TypeError, ValueError) as exc:
            raise QueryError("encodedQuery is not valid JSON") from exc
    raw = raw or {}
    if not isinstance(raw, dict):
        raise QueryError("query must be an object")
    # No fields at all: undocumented; answered as time, deviceId and the whole payload (guess).
    fields = tuple(_field(f) for f in raw.get("fields") or ()) or DEFAULT_FIELDS
    filters = raw.get("filters") or ()
    if not isinstance(filters, list | tuple):
        raise QueryError("filters must be a list")
    for item in filters:
        _check_filter(item)
    bucket = raw.get("timeBucket") or params.get("query.timeBucket")
    return Query(fields, tuple(filters), _bucket_micros(bucket) if bucket else None)


def _field(raw: Any) -> Field:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        raise QueryError("each field needs a path")
    agg = raw.get("agg") or None
    if agg is not None and agg not in AGGREGATES:
        raise QueryError(f"unknown aggregation {agg!r}")
    path = raw["path"]
    key = raw.get("alias") or ("data" if path == "*" else path)
    return Field(path, key, agg, raw.get("type") or None)


def _bucket_micros(text: Any) -> int:
    match = _BUCKET.match(str(text).strip())
    if not match or int(match[1]) <= 0:
        raise QueryError(f"invalid timeBucket {text!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]] * 1_000_000


def _check_filter(item: Any) -> None:
    if not isinstance(item, dict) or "op" not in item:
        raise QueryError("each filter needs an op")
    if item["op"] in ("and", "or"):
        for inner in item.get("filters") or ():
            _check_filter(inner)
    elif item["op"] not in ("=", "<>", "<", "<=", ">", ">="):
        raise QueryError(f"unknown filter op {item['op']!r}")


# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One stored reading as the query sees it."""

    micros: int
    device_id: str
    payload: Any


def run_query(
    query: Query, rows: Sequence[Row], render_time: Callable[[int], str]
) -> list[dict[str, Any]]:
    """The result rows, newest first (`rows` come oldest first)."""
    kept = [r for r in rows if all(_passes(f, r) for f in query.filters)]
    if not query.aggregated and query.bucket_micros is None:
        return [_plain(query, r, render_time) for r in reversed(kept)]
    return _grouped(query, kept)


def _plain(query: Query, row: Row, render_time: Callable[[int], str]) -> dict[str, Any]:
    return {f.key: _value(f, row, render_time) for f in query.fields}


def _value(field: Field, row: Row, render_time: Callable[[int], str]) -> Any:
    if field.path == "time":
        return render_time(row.micros)
    if field.path in DEVICE_PATHS:
        return row.device_id
    return _convert(_at(row.payload, field.path), field.type)


def _grouped(query: Query, rows: Iterable[Row]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    keys = [f for f in query.fields if not f.agg]
    for row in rows:
        group = tuple(json.dumps(_group_value(query, f, row), sort_keys=True) for f in keys)
        groups.setdefault(group, []).append(row)
    result = []
    for members in groups.values():
        first = members[0]
        item = {f.key: _group_value(query, f, first) for f in keys}
        for f in query.fields:
            if f.agg:
                item[f.key] = _aggregate(f, members)
        result.append((_group_micros(query, first), item))
    result.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in result]


def _group_micros(query: Query, row: Row) -> int:
    bucket = query.bucket_micros
    return row.micros - row.micros % bucket if bucket else row.micros


def _group_value(query: Query, field: Field, row: Row) -> Any:
    if field.path == "time":
        return _bucket_time(_group_micros(query, row))
    return _value(field, row, _bucket_time)


def _bucket_time(micros: int) -> str:

    moment = from_micros(micros)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _aggregate(field: Field, members: list[Row]) -> Any:
    if field.agg == "count":
        if field.path == "*":
            return len(members)
        return sum(1 for r in members if _at(r.payload, field.path) is not None)
    values = [_number(_convert(_at(r.payload, field.path), field.type or "float")) for r in members]
    numbers = [v for v in values if v is not None]
    if not numbers:
        return None
    if field.agg == "sum":
        return sum(numbers)
    if field.agg == "avg":
        return sum(numbers) / len(numbers)
    return max(numbers) if field.agg == "max" else min(numbers)


def _at(payload: Any, path: str) -> Any:
    if path == "*":
        return payload
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _convert(value: Any, kind: str | None) -> Any:
    if kind in (None, "") or value is None:
        return value
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(float(value))
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _passes(item: dict[str, Any], row: Row) -> bool:
    op = item["op"]
    if op in ("and", "or"):
        results = (_passes(inner, row) for inner in item.get("filters") or ())
        return all(results) if op == "and" else any(results)
    path = item.get("path", "")
    actual = row.device_id if path in DEVICE_PATHS else _at(row.payload, path)
    wanted = item.get("value")
    if op in ("=", "<>"):
        equal = actual in wanted if isinstance(wanted, list) else actual == wanted
        return equal if op == "=" else not equal
    left, right = _number(actual), _number(wanted)
    if left is None or right is None:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
