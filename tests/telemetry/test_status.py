"""The online/offline rule, written once in SQL (telemetry.status)."""

from datetime import UTC, datetime, timedelta

from telemetry.models import Device
from telemetry.status import refresh_statuses

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_online_through_the_cutoff_offline_after_never_without_a_sighting(integration, make_device):
    make_device(integration, "edge", last_seen=NOW - HOUR, status=Device.Status.NEVER)
    make_device(integration, "late", last_seen=NOW - HOUR - timedelta(microseconds=1))
    make_device(integration, "new", last_seen=None, status=Device.Status.ONLINE)

    changed = refresh_statuses(integration.pk, now=NOW, offline_after=HOUR)

    statuses = dict(Device.objects.values_list("external_id", "status"))
    assert statuses == {"edge": "online", "late": "offline", "new": "never"}
    assert changed == 3
    # A second pass finds nothing to change and writes no row.
    assert refresh_statuses(integration.pk, now=NOW, offline_after=HOUR) == 0


def test_other_integrations_are_left_alone(make_integration, make_device):
    mine, theirs = make_integration(name="mine"), make_integration(name="theirs")
    make_device(mine, "a", last_seen=NOW)
    make_device(theirs, "b", last_seen=NOW)

    refresh_statuses(mine.pk, now=NOW, offline_after=HOUR)

    assert Device.objects.get(external_id="a").status == "online"
    assert Device.objects.get(external_id="b").status == Device.Status.NEVER
