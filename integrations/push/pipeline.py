"""The Golioth pipelines an operator pastes for one integration (shared/golioth-api.md §4, §6).

Every key used is in Golioth's docs (repo golioth/docs, docs/data-routing/): `filter.path` and
`filter.content_type` (1-filters), `steps[].name`, `transformer`, `destination` (README), the
transformers cbor-to-json, inject-metadata, inject-path, extract-timestamp (3-transformers), the
destinations lightdb-stream, webhook with `url` and `headers`, batch (4-destinations), `$NAME`
secrets in destination parameters (2-secrets).

Why one pipeline per mirrored pattern and content type: a filter names one path pattern (exact,
or a prefix ending in `*`) and one content type, and nothing excludes a path. `cbor-to-json`
drops whatever is not CBOR, so JSON and CBOR devices need a pipeline each. LightDB Stream and the
webhook get the same JSON: the webhook's step adds `inject-metadata` (the device, project and
the message's own time) for its destination only, and gsync hashes the envelope's `data`, which
is what LightDB Stream stored; with payloadsNestedUnderPath, `inject-path` runs for LightDB
Stream only and gsync nests the webhook copy the same way (integrations.golioth.payloads).
"""

from __future__ import annotations

import json
import re

from integrations.golioth.paths import LOGS_PATH, WILDCARD, pattern_matches
from integrations.models import DeviceIntegration
from integrations.sync_settings import SettingsError, SyncSettings

SECRET_NAME = "GSYNC_WEBHOOK_TOKEN"
JSON = "application/json"
CBOR = "application/cbor"
ALL_PATHS = WILDCARD

HEADER = """\
# Golioth pipelines for the gsync integration "{name}".
#
# Paste each YAML document below (the parts between the --- lines) into a pipeline of its own
# (Golioth console: Pipelines > Create). A pipeline's filter names one path and one content
# type, so each mirrored path needs one pipeline for JSON devices and one for CBOR devices.
# Each stores the reading in LightDB Stream (read by gsync's scheduled pull) and pushes the
# same JSON to gsync at once; the two copies become one row.
#
# 1. Secret: in Golioth (Credentials > Secrets) create a secret named {secret}
#    whose value is one of this integration's webhook secrets (gsync shows a new secret
#    once, when added).
# 2. Default pipelines: a message that matches two pipelines is sent through both, and two
#    pipelines delivering to one destination deliver it twice. New projects come with default
#    pipelines; disable every other enabled pipeline that sends these paths to LightDB Stream
#    (lightdb-stream destination), or each reading is stored there twice. Keep "Default CBOR
#    Logs" (/logs to Golioth Logs): logs are not telemetry. When Mirrored paths change here,
#    replace these pipelines with the new ones.
# 3. Buffered uploads: a device that buffers readings while offline can upload them as one
#    JSON array, each item carrying its time in t, ts, time or timestamp. For that, put these
#    two steps first (after the decode step in a CBOR pipeline):
#      - name: split
#        destination:
#          type: batch
#          version: v1
#      - name: time
#        transformer:
#          type: extract-timestamp
#          version: v1
#    batch sends each item through the pipelines again as its own JSON message (to the JSON
#    pipeline of the same path); extract-timestamp makes the item's time the reading's time
#    and removes that key before LightDB Stream and gsync see it. What Golioth then does with
#    the array itself is not documented: gsync refuses a list (400) and keeps the delivery.
#    Such readings arrive hours after their time, behind the pull's overlap: the webhook
#    stores them at once, and a reconcile catches those the webhook missed.
"""

UNLISTED_NOTE = """\
#
# Mirrored paths is blank: every path but /logs. A Golioth path filter cannot say that (it
# matches a path exactly or by a prefix ending in *, and cannot exclude one), so:
# - JSON devices and Golioth's console simulator: the pipeline below matches every path.
#   The SDK sends its log lines to /logs as CBOR, so they do not match it.
# - CBOR devices: a CBOR pipeline for "*" would carry the SDK's /logs lines into LightDB
#   Stream. List the paths your devices send in Mirrored paths (/sensor, /env/*), or have them
#   send telemetry under one prefix (/telemetry/*) and list that; this page then shows a JSON
#   and a CBOR pipeline for each.
"""

FILTER = """\
filter:
  path: {path}
  content_type: {content_type}
steps:
"""
DECODE_STEP = """\
  - name: decode
    transformer:
      type: cbor-to-json
      version: v1
"""
HISTORY_STEP = """\
  - name: history
    destination:
      type: lightdb-stream
      version: v1
"""
NESTED_HISTORY_STEP = """\
  # payloadsNestedUnderPath is on: LightDB Stream stores {"<path>": payload}.
  - name: history
    transformer:
      type: inject-path
      version: v1
    destination:
      type: lightdb-stream
      version: v1
"""
PUSH_STEP = """\
  - name: push
    transformer:
      type: inject-metadata
      version: v1
    destination:
      type: webhook
      version: v1
      parameters:
        url: {url}
        headers:
          Authorization: ${secret}
"""
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9._~%/?&=+-]+(:[0-9]+)?[A-Za-z0-9._~%/?&=+-]*")
KINDS = {JSON: "JSON devices", CBOR: "CBOR devices (the Golioth SDK's default)"}


def pipeline_filters(sync_settings: SyncSettings) -> list[tuple[str, str]]:
    """(path pattern, content type) of each pipeline the integration needs, in display order."""
    if sync_settings.mirrored_paths is None:
        return [(ALL_PATHS, JSON)]
    return [(path, kind) for path in sync_settings.mirrored_paths for kind in (JSON, CBOR)]


def pipeline_yaml(integration: DeviceIntegration) -> str:
    """The pipelines for `integration`, as one multi-document YAML text ready to copy."""
    try:
        sync_settings = integration.sync_settings
    except SettingsError:
        sync_settings = SyncSettings()  # the admin shows the settings error itself
    name = " ".join(integration.name.split()).replace('"', "'")
    parts = [HEADER.format(name=name, secret=SECRET_NAME)]
    if sync_settings.mirrored_paths is None:
        parts.append(UNLISTED_NOTE)
    filters = pipeline_filters(sync_settings)
    for number, (path, kind) in enumerate(filters, start=1):
        parts.append(f"---\n# Pipeline {number} of {len(filters)}: {path}, {KINDS[kind]}.\n")
        if sync_settings.mirrored_paths is not None and pattern_matches(path, LOGS_PATH):
            parts.append("# This pattern matches /logs too: the SDK's log lines become readings.\n")
        parts.append(_document(integration, path=path, kind=kind, settings=sync_settings))
    return "".join(parts)


def _document(
    integration: DeviceIntegration, *, path: str, kind: str, settings: SyncSettings
) -> str:
    steps = [DECODE_STEP] if kind == CBOR else []
    steps.append(NESTED_HISTORY_STEP if settings.payloads_nested_under_path else HISTORY_STEP)
    steps.append(PUSH_STEP.format(url=_scalar(integration.webhook_url), secret=SECRET_NAME))
    return FILTER.format(path=json.dumps(path), content_type=kind) + "".join(steps)


def _scalar(text: str) -> str:
    """Plain as in Golioth's examples when that is safe, else a JSON string: JSON strings are
    YAML double-quoted scalars, so nothing in them can start a new key."""
    return text if _PLAIN_URL.fullmatch(text) else json.dumps(text)
