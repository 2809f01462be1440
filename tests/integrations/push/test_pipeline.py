"""The Golioth pipelines gsync shows operators (issue 8 §4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import cbor2
import pytest
import yaml
from django.utils import timezone

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push.pipeline import pipeline_yaml
from telemetry.keys import dedup_key
from telemetry.models import TelemetryRecord

SECRET = "whsec-pipeline-0123456789-abcdef"
DEVICE = "686d5da09c3ca8d766c1672b"
JSON, CBOR = "application/json", "application/cbor"

# The types Golioth documents, from the file names and titles of golioth/docs (HEAD):
# docs/data-routing/3-transformers/{1-cbor-to-json, 2-extract-timestamp, 3-inject-metadata,
# 4-inject-path, 5-json-patch, 6-struct-to-json, 7-base64, 8-embed-in-json, 9-webhook,
# 10-location}.md and docs/data-routing/4-destinations/{1-lightdb-stream, 2-mongodb, 3-influxdb,
# 4-webhook, 5-azure-event-hubs, 6-aws-sqs, 7-gcp-pubsub, 8-batch, 9-memfault, 10-aws-s3,
# 11-kafka, 12-gcp-cloud-storage, 13-azure-blob-storage, 14-lightdb-state, 15-location, 16-logs,
# 17-aws-kinesis}.md.
DOCUMENTED_TRANSFORMERS = {
    "cbor-to-json",
    "extract-timestamp",
    "inject-metadata",
    "inject-path",
    "json-patch",
    "struct-to-json",
    "base64",
    "embed-in-json",
    "webhook",
    "location",
}
DOCUMENTED_DESTINATIONS = {
    "lightdb-stream",
    "mongodb",
    "influxdb",
    "webhook",
    "azure-event-hubs",
    "aws-sqs",
    "gcp-pubsub",
    "batch",
    "memfault",
    "aws-s3",
    "kafka",
    "gcp-cloud-storage",
    "azure-blob-storage",
    "lightdb-state",
    "location",
    "logs",
    "aws-kinesis",
}
# Keys from docs/data-routing/README.md (filter, steps, version; a step's name, transformer,
# destination), 1-filters/*.md (path, content_type), 3-transformers/README.md and
# 4-destinations/README.md (type, version, parameters), 4-destinations/4-webhook.md (url, headers).
PIPELINE_KEYS = {"filter", "steps", "version"}
FILTER_KEYS = {"path", "content_type"}
STEP_KEYS = {"name", "transformer", "destination"}
PART_KEYS = {"type", "version", "parameters"}
WEBHOOK_PARAMETERS = {"url", "headers"}


@pytest.fixture
def make_hooked(make_integration):
    def make(settings: dict | None = None, name: str = "fleet") -> DeviceIntegration:
        integration = make_integration(name, webhook_enabled=True, settings=settings)
        integration.add_webhook_secret(SECRET)
        integration.save()
        return integration

    return make


def pipelines(integration: DeviceIntegration) -> list[dict[str, Any]]:
    documents = list(yaml.safe_load_all(pipeline_yaml(integration)))
    assert all(isinstance(document, dict) for document in documents)
    return documents


def filters(integration: DeviceIntegration) -> set[tuple[str, str]]:
    return {(p["filter"]["path"], p["filter"]["content_type"]) for p in pipelines(integration)}


def step_types(pipeline: dict[str, Any]) -> list[str]:
    return [
        step[part]["type"]
        for step in pipeline["steps"]
        for part in ("transformer", "destination")
        if part in step
    ]


# --- the YAML itself -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{}, {"mirroredPaths": ["/sensor", "/env/*"]}, {"payloadsNestedUnderPath": True}],
)
def test_pipeline_yaml_uses_only_documented_keys_and_types(make_hooked, settings):
    for pipeline in pipelines(make_hooked(settings)):
        assert set(pipeline) <= PIPELINE_KEYS
        assert set(pipeline["filter"]) <= FILTER_KEYS
        for step in pipeline["steps"]:
            assert set(step) <= STEP_KEYS and step["name"]
            if "transformer" in step:
                assert set(step["transformer"]) <= PART_KEYS
                assert step["transformer"]["type"] in DOCUMENTED_TRANSFORMERS
            if "destination" in step:
                assert set(step["destination"]) <= PART_KEYS
                assert step["destination"]["type"] in DOCUMENTED_DESTINATIONS
                if step["destination"]["type"] == "webhook":
                    assert set(step["destination"]["parameters"]) <= WEBHOOK_PARAMETERS


def test_pipeline_yaml_filters_cover_exactly_the_mirrored_paths_for_json_and_cbor(make_hooked):
    integration = make_hooked({"mirroredPaths": ["/sensor", "/env/*", "/gps"]})

    assert filters(integration) == {
        (path, kind) for path in ("/sensor", "/env/*", "/gps") for kind in (JSON, CBOR)
    }


def test_pipeline_yaml_default_keeps_logs_out_and_says_what_to_do(make_hooked):
    integration = make_hooked()

    assert filters(integration) == {("*", JSON)}  # the SDK's /logs lines are CBOR
    text = pipeline_yaml(integration)
    assert "every path but /logs" in text
    assert "cannot exclude" in text
    assert "List the paths your devices send in Mirrored paths" in text


def test_pipeline_yaml_stores_in_lightdb_stream_and_pushes_with_the_secret(make_hooked, settings):
    settings.GSYNC_PUBLIC_URL = "https://gsync.example.com"
    integration = make_hooked({"mirroredPaths": ["/sensor"]})

    for pipeline in pipelines(integration):
        kind = pipeline["filter"]["content_type"]
        expected = ["lightdb-stream", "inject-metadata", "webhook"]
        assert step_types(pipeline) == (["cbor-to-json", *expected] if kind == CBOR else expected)
        push = pipeline["steps"][-1]
        # inject-metadata shares the webhook's step: LightDB Stream stores the plain payload.
        assert set(push) == {"name", "transformer", "destination"}
        assert push["destination"]["parameters"] == {
            "url": f"https://gsync.example.com/webhooks/golioth/{integration.webhook_token}/",
            "headers": {"Authorization": "$GSYNC_WEBHOOK_TOKEN"},
        }
    text = pipeline_yaml(integration)
    assert "secret named GSYNC_WEBHOOK_TOKEN" in text
    assert SECRET not in text and "\t" not in text


def test_pipeline_yaml_explains_default_pipelines_and_buffered_uploads(make_hooked):
    text = pipeline_yaml(make_hooked({"mirroredPaths": ["/sensor"]}))

    assert "disable every other enabled pipeline that sends these paths to LightDB Stream" in text
    assert "type: batch" in text and "type: extract-timestamp" in text
    assert "t, ts, time or timestamp" in text


def test_pipeline_yaml_nests_only_the_lightdb_copy_when_payloads_are_nested(make_hooked):
    integration = make_hooked({"mirroredPaths": ["/sensor"], "payloadsNestedUnderPath": True})

    for pipeline in pipelines(integration):
        history = next(s for s in pipeline["steps"] if s["name"] == "history")
        assert history["transformer"]["type"] == "inject-path"
        assert history["destination"]["type"] == "lightdb-stream"


def test_pipeline_yaml_warns_when_a_listed_pattern_takes_logs(make_hooked):
    assert "/logs too" in pipeline_yaml(make_hooked({"mirroredPaths": ["*"]}))
    assert "/logs too" not in pipeline_yaml(make_hooked({"mirroredPaths": ["/sensor"]}, "b"))


def test_pipeline_yaml_keeps_a_hostile_name_inside_its_comment(make_hooked):
    integration = make_hooked(name='evil"\nsteps: []')

    text = pipeline_yaml(integration)

    assert "\nsteps: []" not in text
    assert all(p["steps"] for p in pipelines(integration))


# --- the YAML run as Golioth documents it, against gsync's webhook -------------------------------


@dataclass
class Golioth:
    """Runs pipeline YAML by the rules of golioth/docs data-routing (README: steps in order; a
    transformer sharing a step with a destination feeds only that destination; 1-filters: exact
    or trailing-* prefix path, exact content type; cbor-to-json drops what is not CBOR)."""

    client: Any
    documents: list[dict[str, Any]]
    secrets: dict[str, str]
    stream: list[tuple[str, datetime, Any]] = field(default_factory=list)

    def send(self, *, device: str, path: str, content_type: str, body: bytes, at: datetime):
        for pipeline in self.documents:
            if self._matches(pipeline["filter"], path, content_type):
                self._run(pipeline["steps"], device, path, content_type, body, at)

    @staticmethod
    def _matches(spec: dict[str, str], path: str, content_type: str) -> bool:
        pattern = spec.get("path", "*")
        if pattern.endswith("*"):
            path_ok = path.startswith(pattern[:-1])
        else:
            path_ok = path.rstrip("/") == pattern.rstrip("/")
        return path_ok and spec.get("content_type", content_type) == content_type

    def _run(self, steps, device, path, content_type, body, at) -> None:
        message = (content_type, body)
        for step in steps:
            transformed = message
            if "transformer" in step:
                transformed = self._transform(step["transformer"]["type"], message, device, at)
                if transformed is None:
                    return  # dropped
            if "destination" in step:
                self._deliver(step["destination"], transformed, device, path, at)
            else:
                message = transformed

    def _transform(self, kind, message, device, at):
        content_type, body = message
        if kind == "cbor-to-json":
            if content_type != CBOR:
                return None
            return JSON, json.dumps(cbor2.loads(body)).encode()
        if kind == "inject-metadata":
            seconds = int(at.timestamp())
            return JSON, json.dumps(
                {
                    "data": json.loads(body),
                    "device_id": device,
                    "project_id": "sim-project",
                    "timestamp": {"seconds": seconds, "nanos": at.microsecond * 1000},
                }
            ).encode()
        raise AssertionError(f"this test runner does not know {kind}")

    def _deliver(self, destination, message, device, path, at) -> None:
        content_type, body = message
        if destination["type"] == "lightdb-stream":
            assert content_type == JSON  # docs: LightDB Stream takes JSON only
            self.stream.append((device, at, json.loads(body)))
            return
        assert destination["type"] == "webhook"
        parameters = destination["parameters"]
        headers = {
            name: self.secrets[value[1:]] if value.startswith("$") else value
            for name, value in parameters["headers"].items()
        }
        headers.update(
            {
                "Ce-Source": device,
                "Ce-Subject": "sim-project",
                "Ce-Type": f"io.golioth.data.v1/.s{path}",
            }
        )
        url = urlsplit(parameters["url"]).path
        response = self.client.generic(
            "POST", url, body, content_type=content_type, headers=headers
        )
        assert response.status_code == 200, response.content


def golioth_for(client, integration: DeviceIntegration) -> Golioth:
    return Golioth(client, pipelines(integration), {"GSYNC_WEBHOOK_TOKEN": SECRET})


def test_pipeline_json_and_cbor_devices_land_once_with_the_stream_copys_key(client, make_hooked):
    integration = make_hooked({"mirroredPaths": ["/sensor"]})
    golioth = golioth_for(client, integration)
    at = (timezone.now() - timedelta(minutes=1)).astimezone(UTC)

    golioth.send(device=DEVICE, path="/sensor", content_type=JSON, body=b'{"t": 1}', at=at)
    golioth.send(
        device="cbor-dev", path="/sensor", content_type=CBOR, body=cbor2.dumps({"t": 2}), at=at
    )

    assert [payload for _, _, payload in golioth.stream] == [{"t": 1}, {"t": 2}]
    rows = TelemetryRecord.objects.order_by("telemetry__t")
    assert [row.telemetry for row in rows] == [{"t": 1}, {"t": 2}]
    # The pull will fetch the stream copies: they must hash to the rows the webhook stored.
    keys = {
        dedup_key(integration_id=integration.pk, device_external_id=d, timestamp=t, payload=p)
        for d, t, p in golioth.stream
    }
    assert keys == {row.dedup_key for row in rows}


def test_pipeline_sdk_logs_reach_neither_lightdb_stream_nor_gsync(client, make_hooked):
    integration = make_hooked({"mirroredPaths": ["/sensor", "/env/*"]})
    golioth = golioth_for(client, integration)
    log_line = cbor2.dumps({"level": "info", "module": "app", "msg": "Sending temperature 21.5"})

    golioth.send(device=DEVICE, path="/logs", content_type=CBOR, body=log_line, at=timezone.now())

    assert golioth.stream == []
    assert not WebhookDelivery.objects.exists() and not TelemetryRecord.objects.exists()


def test_pipeline_default_json_device_and_console_simulator_are_stored(client, make_hooked):
    integration = make_hooked()
    golioth = golioth_for(client, integration)
    at = timezone.now() - timedelta(seconds=5)

    golioth.send(device=DEVICE, path="/sensor", content_type=JSON, body=b'{"t": 1}', at=at)
    golioth.send(device=DEVICE, path="/logs", content_type=CBOR, body=cbor2.dumps({}), at=at)

    assert len(golioth.stream) == 1
    assert TelemetryRecord.objects.get().telemetry == {"t": 1}
