"""Golioth Pipelines, as the simulator's fleet routes its messages through them.

A device message (a path, a content type, the bytes the device sent, a time) reaches LightDB
Stream only through a pipeline that delivers it there. Sources (golioth/docs, docs/data-routing/):

- A message matches zero or more pipelines by `filter.path` and `filter.content_type`, and goes
  through each it matches (README, 1-filters): two pipelines to one destination store it twice.
  Path matching is integrations.golioth.paths.pattern_matches (1-filters/1-path). A filter without
  a path or a content type matches every one [guess].
- Steps run in order; a step with a transformer and a destination passes the transformed data to
  its destination only and the untransformed data to the next steps; a transformer alone
  transforms for every later step (README, "Pipelines").
- Transformers: `cbor-to-json` (3-transformers/1), `extract-timestamp` (the message time from `t`,
  `ts`, `time` or `timestamp`, the key removed; 3-transformers/2), `inject-metadata`
  (3-transformers/3), `inject-path` (3-transformers/4). Input that is not CBOR, or not JSON where
  JSON is required, drops the message [guess]. A numeric timestamp is Unix milliseconds when it
  is above 10^11 (the batch page's example, `1626362266059`), else seconds [guess]; the first of
  the four keys present wins [guess].
- Destinations: `lightdb-stream` stores the JSON payload at the message time (4-destinations/1);
  `batch` sends each item of a JSON array through the pipelines again as its own JSON message
  (4-destinations/8; the CBOR pipeline's items reach the JSON one, 5-examples/2). The array itself
  goes no further than the batch step [guess: otherwise the docs' "Legacy LightDB Stream" example
  would store every batch once more, as an array]; a payload that is not an array passes on.
  `logs` destinations are counted, not delivered; `webhook` deliveries (4-destinations/4-webhook:
  the message as the steps before it left it) go to the Router's `webhook` callback when it has
  one, else are only counted (gsync's tests of the push path send webhooks with
  simulator_webhooks.py). The callback only hands the message over: the body shape, headers,
  retries and ordering are the caller's (bench/soak/traffic.py sends every shape gsync accepts,
  doubled and out of order, because Golioth documents no delivery order or retry policy [guess:
  at-least-once, any order]).
- Golioth's "Default CBOR Logs" pipeline (5-examples/28): `/logs`, CBOR, to Golioth Logs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import cbor2
import yaml

from integrations.golioth.paths import pattern_matches
from integrations.golioth.payloads import PayloadError, nest_under_path, parse_time
from integrations.golioth.simulator.micros import to_micros

JSON = "application/json"
CBOR = "application/cbor"
TIMESTAMP_KEYS = ("t", "ts", "time", "timestamp")
DEFAULT_CBOR_LOGS = {
    "filter": {"path": "/logs", "content_type": CBOR},
    "steps": [
        {
            "name": "step-0",
            "transformer": {"type": "cbor-to-json", "version": "v1"},
            "destination": {"type": "logs", "version": "v1"},
        }
    ],
}
# The two steps gsync's pipeline page tells operators to put first for buffered uploads
# (integrations.pipeline.HEADER, point 3).
BUFFERED_UPLOAD_STEPS = [
    {"name": "split", "destination": {"type": "batch", "version": "v1"}},
    {"name": "time", "transformer": {"type": "extract-timestamp", "version": "v1"}},
]
# batch re-enters the pipelines: an array of arrays of ... stops here [guess].
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Message:
    """One data message: what a device sent to `/.s/<path>`, and when Golioth says it was."""

    device_id: str
    path: str
    content_type: str
    payload: bytes
    time_ns: int


# A destination's delivery: the message as it reached it, its payload decoded from JSON.
Deliver = Callable[[Message, Any], None]


def pipelines_from_yaml(text: str, *, buffered_uploads: bool = True) -> list[dict[str, Any]]:
    """The pipelines of a multi-document YAML text (as gsync's integration page shows them),
    with the buffered-upload steps put first (after a CBOR decode) as that page says."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    if buffered_uploads:
        documents = [with_buffered_uploads(doc) for doc in documents]
    return documents


def with_buffered_uploads(document: dict[str, Any]) -> dict[str, Any]:
    steps = list(document.get("steps") or [])
    at = 1 if steps and _transformer(steps[0]) == "cbor-to-json" else 0
    return {**document, "steps": steps[:at] + BUFFERED_UPLOAD_STEPS + steps[at:]}


class Router:
    """Routes messages through `pipelines`; `stream` gets every LightDB Stream delivery and
    `webhook`, when given, every webhook delivery (the message as its step transformed it)."""

    def __init__(
        self,
        pipelines: Iterable[dict[str, Any]],
        *,
        project_id: str,
        stream: Deliver,
        webhook: Deliver | None = None,
    ):
        self.pipelines = list(pipelines)
        self.project_id = project_id
        self.stream = stream
        self.webhook = webhook
        self.delivered: Counter[str] = Counter()
        self.dropped = 0

    def route(self, message: Message, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            self.dropped += 1
            return
        for pipeline in self.pipelines:
            if _matches(pipeline.get("filter") or {}, message):
                self._run(pipeline.get("steps") or [], message, depth)

    def _run(self, steps: list[dict[str, Any]], message: Message | None, depth: int) -> None:
        for step in steps:
            if message is None:
                return
            transformer, destination = step.get("transformer"), step.get("destination")
            transformed = self._transform(transformer, message) if transformer else message
            if destination:
                if transformed is not None:
                    consumed = self._deliver(destination["type"], transformed, depth)
                    if consumed and not transformer:
                        return
            else:
                message = transformed

    def _transform(self, transformer: dict[str, Any], message: Message) -> Message | None:
        kind = transformer["type"]
        if kind == "cbor-to-json":
            try:
                value = cbor2.loads(message.payload)
            except (cbor2.CBORDecodeError, ValueError):
                return None
            return replace(message, content_type=JSON, payload=_encode(value))
        value = _json_or_none(message)
        if value is _INVALID:
            return None
        if kind == "extract-timestamp":
            return _extract_timestamp(message, value)
        if kind == "inject-path":
            return replace(message, payload=_encode(nest_under_path(message.path, value)))
        if kind == "inject-metadata":
            seconds, nanos = divmod(message.time_ns, 1_000_000_000)
            envelope = {
                "data": value,
                "device_id": message.device_id,
                "project_id": self.project_id,
                "timestamp": {"seconds": seconds, "nanos": nanos},
            }
            return replace(message, payload=_encode(envelope))
        raise ValueError(f"the simulator does not know the transformer {kind!r}")

    def _deliver(self, kind: str, message: Message, depth: int) -> bool:
        """Deliver to one destination; True when the message goes no further (a split array)."""
        self.delivered[kind] += 1
        value = _json_or_none(message)
        if kind == "lightdb-stream":
            if value is _INVALID:
                self.dropped += 1
            else:
                self.stream(message, value)
            return False
        if kind == "batch":
            if not isinstance(value, list):
                return False
            for item in value:
                self.route(replace(message, content_type=JSON, payload=_encode(item)), depth + 1)
            return True
        if kind == "webhook" and self.webhook is not None and value is not _INVALID:
            self.webhook(message, value)
            return False
        if kind in ("logs", "webhook"):
            return False
        raise ValueError(f"the simulator does not know the destination {kind!r}")


_INVALID = object()


def _matches(filter_: dict[str, Any], message: Message) -> bool:
    path, content_type = filter_.get("path"), filter_.get("content_type")
    if path is not None and not pattern_matches(path, message.path):
        return False
    return content_type is None or content_type == message.content_type


def _transformer(step: dict[str, Any]) -> str | None:
    transformer = step.get("transformer")
    return transformer.get("type") if transformer and not step.get("destination") else None


def _json_or_none(message: Message) -> Any:
    if message.content_type != JSON:
        return _INVALID
    try:
        return json.loads(message.payload)
    except ValueError:
        return _INVALID


def _extract_timestamp(message: Message, value: Any) -> Message:
    if not isinstance(value, dict):
        return message
    key = next((k for k in TIMESTAMP_KEYS if k in value), None)
    if key is None:
        return message
    time_ns = _timestamp_ns(value[key])
    if time_ns is None:
        return message
    rest = {k: v for k, v in value.items() if k != key}
    return replace(message, payload=_encode(rest), time_ns=time_ns)


def _timestamp_ns(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        unit = 1_000_000 if raw > 1e11 else 1_000_000_000
        return int(raw * unit)
    if isinstance(raw, str):
        try:
            moment = parse_time(raw)
        except PayloadError:
            return None
        return to_micros(moment) * 1000
    return None


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
