"""Golioth's device list -> the `devices` table, for the pull (integrations.pull.sync).

One upsert per page of Golioth's device list; the device filter decides which devices a run syncs
(their rows, and their readings). Golioth has no online flag, so the status is derived from the
newest of the last report and the newest reading (telemetry.status).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q

from integrations.golioth.client import GoliothClient
from integrations.golioth.payloads import DeviceRecord
from integrations.models import DeviceIntegration
from integrations.sync_settings import SyncSettings
from telemetry.models import Device
from telemetry.status import refresh_statuses

UPSERT_FIELDS = [
    "name",
    "hardware_ids",
    "tag_ids",
    "cohort_id",
    "blueprint_id",
    "enabled",
    "last_report",
    "firmware",
    "firmware_version",
    "metadata",
    "updated_at",
]


@dataclass
class DeviceScope:
    """The devices one run syncs.

    `devices` maps Golioth ids to row ids (0 in a dry run, which writes no rows). `restricted`:
    a filter or an explicit device list applies, so readings of any other device are dropped;
    otherwise a reading of a device missing from the list (deleted since?) gets a minimal row
    rather than being lost. `named` and `tags` are what the stream query can filter by itself.
    """

    devices: dict[str, int]
    restricted: bool
    named: frozenset[str] | None = None
    tags: list[str] | None = None


def refresh_devices(
    client: GoliothClient,
    *,
    integration: DeviceIntegration,
    sync_settings: SyncSettings,
    now: datetime,
    device_ids: frozenset[str] | None = None,
    write: bool = True,
    on_page: Callable[[], None] | None = None,
) -> DeviceScope:
    """Page through Golioth's devices, upsert the ones this run syncs, return the scope."""
    device_filter = sync_settings.device_filter
    devices: dict[str, int] = {}
    records = client.iter_devices(**(device_filter.golioth_device_query() if device_filter else {}))
    for page in _chunks(records, client.page_size):
        wanted = [
            d
            for d in page
            if (device_filter is None or device_filter.matches(d, now=now))
            and (device_ids is None or d.external_id in device_ids)
        ]
        if write:
            devices.update(_upsert(integration, wanted))
        else:
            devices.update((d.external_id, 0) for d in wanted)
        if on_page:
            on_page()
    if write:
        refresh_statuses(integration.pk, now=now, offline_after=sync_settings.offline_after)
    named = device_ids is not None or bool(device_filter and device_filter.device_ids)
    tags = device_filter.golioth_stream_tags() if device_filter else ()
    return DeviceScope(
        devices=devices,
        restricted=device_filter is not None or device_ids is not None,
        named=frozenset(devices) if named else None,
        tags=list(tags) or None,
    )


def _chunks(records: Iterable[DeviceRecord], size: int) -> Iterable[list[DeviceRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _upsert(
    integration: DeviceIntegration,
    records: list[DeviceRecord],
) -> dict[str, int]:
    if not records:
        return {}
    rows = [
        Device(
            integration=integration,
            external_id=r.external_id,
            name=r.name,
            hardware_ids=r.hardware_ids,
            tag_ids=r.tag_ids,
            cohort_id=r.cohort_id,
            blueprint_id=r.blueprint_id,
            enabled=r.enabled,
            last_report=r.last_report,
            last_seen=r.last_report,
            firmware=_firmware(r),
            firmware_version=r.firmware_version,
            metadata=r.metadata,
        )
        for r in records
    ]
    Device.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["integration", "external_id"],
        update_fields=UPSERT_FIELDS,
    )
    ids = [r.external_id for r in records]
    mine = Device.objects.filter(integration=integration, external_id__in=ids)
    # last_seen is the newest of the last report and the newest reading: only ever forward.
    mine.filter(last_report__isnull=False).filter(
        Q(last_seen__isnull=True) | Q(last_seen__lt=F("last_report"))
    ).update(last_seen=F("last_report"))
    return dict(mine.values_list("external_id", "pk"))


def _firmware(record: DeviceRecord) -> dict:
    update = record.metadata.get("update")
    return update if isinstance(update, dict) else {}


def ensure_devices(
    integration: DeviceIntegration, scope: DeviceScope, external_ids: set[str]
) -> None:
    """Minimal rows for devices that have readings but are not in Golioth's device list."""
    missing = external_ids - scope.devices.keys()
    if not missing:
        return
    Device.objects.bulk_create(
        [Device(integration=integration, external_id=i, name=i) for i in sorted(missing)],
        ignore_conflicts=True,
    )
    found = Device.objects.filter(integration=integration, external_id__in=missing)
    scope.devices.update(found.values_list("external_id", "pk"))
