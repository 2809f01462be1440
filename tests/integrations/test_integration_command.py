from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from integrations.models import ActivityLog, DeviceIntegration

API_KEY = "cli-key-0123-4567-abcd"  # long enough (20+) for its hint to show
CREATE_FLAGS = [
    "--project-id",
    "berlin-project",
    "--sync-interval-seconds",
    "600",
    "--max-requests-per-second",
    "5",
    "--window-start",
    "22:00",
    "--window-end",
    "06:00",
    "--window-timezone",
    "Europe/Berlin",
    "--window-days",
    "Mon,Tue,Wed,Thu,Fri",
    "--filter-tags",
    "outdoor,berlin,v2",
    "--filter-tag-match",
    "any",
    "--filter-name-pattern",
    "sensor-*",
    "--filter-cohort-ids",
    "cohort-a",
    "--filter-enabled-only",
    "--filter-reported-within-hours",
    "48",
]


def run(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command("integration", *args, stdout=out, **extra)
    return out.getvalue()


def show_json(name: str) -> dict:
    return json.loads(run("show", name, "--json"))


@pytest.fixture
def api_key_env(monkeypatch):
    monkeypatch.setenv("GOLIOTH_API_KEY", API_KEY)


def test_integration_create_reads_back_like_the_admin_form(admin_client, api_key_env, db):
    from tests.integrations.admin.test_admin import ADD_URL, form_data

    admin_client.post(ADD_URL, form_data(name="by-admin", api_key=API_KEY))
    run("create", "by-cli", *CREATE_FLAGS)

    by_admin, by_cli = show_json("by-admin"), show_json("by-cli")

    for data in (by_admin, by_cli):
        for key in ("name", "created_at", "updated_at", "webhook"):
            data.pop(key)
    assert by_cli == by_admin
    assert by_cli["settings"]["timeWindow"]["days"] == [1, 2, 3, 4, 5]
    assert by_cli["api_key"] == "••••abcd"


def test_integration_show_json_has_webhook_url_and_no_secrets(api_key_env, db):
    output = run(
        "create", "fleet", "--project-id", "p", "--webhook-enabled", "--generate-webhook-secret"
    )
    secret = output.split("shown only this once): ")[1].strip()
    integration = DeviceIntegration.objects.get(name="fleet")

    shown = run("show", "fleet", "--json") + run("show", "fleet")

    assert json.loads(run("show", "fleet", "--json"))["webhook"]["url"] == integration.webhook_url
    assert API_KEY not in shown and secret not in shown
    assert integration.api_key_encrypted not in shown
    assert integration.check_webhook_secret(secret)


def test_integration_create_api_key_from_stdin(db):
    run("create", "fleet", "--project-id", "p", "--api-key-stdin", stdin=f"{API_KEY}\n")

    assert DeviceIntegration.objects.get().get_api_key() == API_KEY


def test_integration_create_api_key_from_named_variable(monkeypatch, db):
    monkeypatch.setenv("FLEET_KEY", "other-key-9999")

    run("create", "fleet", "--project-id", "p", "--api-key-env", "FLEET_KEY")

    assert DeviceIntegration.objects.get().get_api_key() == "other-key-9999"


def test_integration_create_without_api_key_is_refused(monkeypatch, db):
    monkeypatch.delenv("GOLIOTH_API_KEY", raising=False)

    with pytest.raises(CommandError, match="GOLIOTH_API_KEY / --api-key-stdin: Enter the"):
        run("create", "fleet", "--project-id", "p")
    assert not DeviceIntegration.objects.exists()


@pytest.mark.parametrize(
    ("flag", "field", "value"),
    [
        ("--sync-interval-seconds", "sync_interval_seconds", "10"),
        ("--window-end", "window_end", "25:00"),
        ("--window-timezone", "window_timezone", "Mars/Base"),
        ("--filter-name-pattern", "filter_name_pattern", "sensor-["),
        ("--telemetry-retention-days", "telemetry_retention_days", "0"),
        ("--telemetry-retention-days", "telemetry_retention_days", "-5"),
        ("--telemetry-retention-days", "telemetry_retention_days", "2"),
    ],
)
def test_integration_invalid_flag_gets_the_form_message(
    admin_client, api_key_env, flag, field, value
):
    from tests.integrations.admin.test_admin import ADD_URL, form_data

    form_message = (
        admin_client.post(ADD_URL, form_data(**{field: value}))
        .context["adminform"]
        .form.errors[field][0]
    )

    with pytest.raises(CommandError) as raised:
        run("create", "fleet", *CREATE_FLAGS, flag, value)

    assert f"{flag}: {form_message}" in str(raised.value).splitlines()
    assert not DeviceIntegration.objects.exists()


def test_integration_update_changes_only_given_flags(api_key_env, db):
    run("create", "fleet", *CREATE_FLAGS)
    before = show_json("fleet")

    output = run("update", "fleet", "--sync-interval-seconds", "900", "--status", "paused")

    after = show_json("fleet")
    assert "Updated integration 'fleet'" in output
    assert after["settings"]["syncIntervalSeconds"] == 900
    assert after["status"] == "paused"
    assert after["sync_state"].pop("next_run") == "not scheduled: paused (Resume to schedule it)"
    assert after["sync_state"].pop("next_run_at") is None
    # Before, the next run depends on the clock (inside the window or not): not compared.
    before["sync_state"].pop("next_run"), before["sync_state"].pop("next_run_at")
    after["settings"]["syncIntervalSeconds"] = before["settings"]["syncIntervalSeconds"]
    for key in ("status", "updated_at"):
        after.pop(key), before.pop(key)
    assert after == before
    entry = ActivityLog.objects.filter(activity_type="settings_changed").first()
    assert entry.trigger == "manual"
    assert entry.metadata["changed"] == ["status", "syncIntervalSeconds"]


def test_integration_update_keeps_api_key_unless_asked(api_key_env, monkeypatch, db):
    run("create", "fleet", "--project-id", "p")
    monkeypatch.setenv("GOLIOTH_API_KEY", "rotated-key-5555")

    run("update", "fleet", "--status", "paused")
    assert DeviceIntegration.objects.get().get_api_key() == API_KEY
    run("update", "fleet", "--api-key-env")
    assert DeviceIntegration.objects.get().get_api_key() == "rotated-key-5555"


def test_integration_update_invalid_saves_nothing(api_key_env, db):
    run("create", "fleet", *CREATE_FLAGS)
    before = show_json("fleet")

    with pytest.raises(CommandError, match="--window-days: Select a valid choice"):
        run("update", "fleet", "--sync-interval-seconds", "900", "--window-days", "funday")

    assert show_json("fleet") == before


def test_integration_update_clears_window_and_filter(api_key_env, db):
    run("create", "fleet", *CREATE_FLAGS)

    run("update", "fleet", "--no-window-enabled", "--no-device-filter")

    settings = show_json("fleet")["settings"]
    assert settings["timeWindow"] is None and settings["deviceFilter"] is None


def test_integration_unknown_name_is_a_clear_error(api_key_env, db):
    run("create", "fleet", "--project-id", "p")

    with pytest.raises(CommandError, match=r"No integration named 'nope' \(known: fleet\)"):
        run("show", "nope")
    with pytest.raises(CommandError, match="No integration named 'nope'"):
        run("update", "nope", "--status", "paused")


def test_integration_create_existing_name_is_refused(api_key_env, db):
    run("create", "fleet", "--project-id", "p")

    with pytest.raises(CommandError, match="NAME: Device integration with this Name already"):
        run("create", "fleet", "--project-id", "other")
    assert DeviceIntegration.objects.get().project_id == "p"


def test_integration_list_shows_each_integration(api_key_env, db):
    assert "No integrations yet" in run("list")
    run("create", "alpha", "--project-id", "p1", "--sync-interval-seconds", "120")
    run("create", "beta", "--project-id", "p2", "--no-sync-enabled")

    lines = run("list").splitlines()

    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "PROJECT",
        "SYNC",
        "INTERVAL",
        "LAST",
        "SYNC",
        "WEBHOOK",
    ]
    assert lines[1].split() == ["alpha", "active", "p1", "on", "120s", "never", "off"]
    assert lines[2].split() == ["beta", "active", "p2", "off", "300s", "never", "off"]


def test_integration_mirrored_paths_flag_sets_clears_and_refuses(api_key_env, db):
    run("create", "fleet", "--project-id", "p", "--mirrored-paths", "sensor,/env/*")
    assert show_json("fleet")["settings"]["mirroredPaths"] == ["/sensor", "/env/*"]

    with pytest.raises(CommandError) as raised:
        run("update", "fleet", "--mirrored-paths", "/env/*,/env/temp")
    assert "--mirrored-paths: '/env/temp' is already covered by '/env/*'" in str(raised.value)

    run("update", "fleet", "--mirrored-paths", "")
    assert show_json("fleet")["settings"]["mirroredPaths"] is None


def test_integration_show_prints_the_pipelines_to_paste(api_key_env, db):
    import yaml

    run("create", "fleet", "--project-id", "p", "--mirrored-paths", "/sensor")

    only = run("show", "fleet", "--pipeline")
    full = run("show", "fleet")

    documents = list(yaml.safe_load_all(only))
    assert [(d["filter"]["path"], d["filter"]["content_type"]) for d in documents] == [
        ("/sensor", "application/json"),
        ("/sensor", "application/cbor"),
    ]
    assert only in full


def test_integration_telemetry_retention_is_set_refused_and_cleared_by_flag(api_key_env, db):
    run("create", "fleet", "--project-id", "p", "--telemetry-retention-days", "90")
    assert show_json("fleet")["settings"]["telemetryRetentionDays"] == 90

    with pytest.raises(CommandError) as raised:
        run("update", "fleet", "--telemetry-retention-days", "0")
    message = "--telemetry-retention-days: Must be between 1 and 36600 (got 0)."
    assert message in str(raised.value).splitlines()
    assert show_json("fleet")["settings"]["telemetryRetentionDays"] == 90  # nothing saved

    run("update", "fleet", "--telemetry-retention-days", "")  # blank: keep forever
    assert show_json("fleet")["settings"]["telemetryRetentionDays"] is None
