from __future__ import annotations

from django.db import models
from django.utils import timezone


class Device(models.Model):
    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"
        NEVER = "never", "Never connected"

    integration = models.ForeignKey(
        "integrations.DeviceIntegration", on_delete=models.CASCADE, related_name="devices"
    )
    external_id = models.CharField("Golioth id", max_length=64)
    name = models.CharField(max_length=200, blank=True)
    hardware_ids = models.JSONField(default=list, blank=True)
    tag_ids = models.JSONField(default=list, blank=True)
    cohort_id = models.CharField(max_length=64, blank=True)
    blueprint_id = models.CharField(max_length=64, blank=True)
    enabled = models.BooleanField(default=True)
    last_report = models.DateTimeField(
        null=True, blank=True, help_text="Golioth's last report time for the device."
    )
    last_seen = models.DateTimeField(
        null=True, blank=True, help_text="Newest of Golioth's last report and the newest reading."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEVER)
    firmware_version = models.CharField(max_length=64, blank=True, db_index=True)
    firmware = models.JSONField(default=dict, blank=True, help_text="Golioth's metadata.update.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "devices"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_id"], name="device_unique_per_integration"
            )
        ]
        indexes = [models.Index(fields=["integration", "-last_seen"], name="device_last_seen")]

    def __str__(self) -> str:
        return self.name or self.external_id

    @property
    def tag_list(self) -> str:
        return ", ".join(self.tag_ids)


class TelemetryRecord(models.Model):
    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (push)"
        SYNC = "sync", "Sync (pull)"
        BACKFILL = "backfill", "Backfill"
        RECONCILE = "reconcile", "Reconcile (repair)"

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="readings")
    integration = models.ForeignKey(
        "integrations.DeviceIntegration", on_delete=models.CASCADE, related_name="readings"
    )
    path = models.CharField(max_length=200, blank=True, default="")
    telemetry = models.JSONField()
    device_timestamp = models.DateTimeField(help_text="Golioth's time for the reading.")
    received_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices)
    time_exact = models.BooleanField(
        default=True, help_text="False while the time is gsync's receive time, not Golioth's."
    )
    activity = models.ForeignKey(
        "integrations.ActivityLog",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="readings",
    )
    # Unique with the reading's time (Meta.constraints): the key includes that time, and on
    # PostgreSQL, where the table is partitioned by it (telemetry.partitioning), a unique index
    # must include it.
    dedup_key = models.UUIDField(editable=False)

    class Meta:
        db_table = "device_telemetry_history"
        ordering = ["-device_timestamp", "-id"]
        indexes = [
            # "latest readings of a device"
            models.Index(fields=["device", "-device_timestamp"], name="telemetry_device_latest"),
            # "readings in a time range" (per integration, and across the table)
            models.Index(
                fields=["integration", "device_timestamp"], name="telemetry_integration_time"
            ),
            models.Index(fields=["-device_timestamp", "-id"], name="telemetry_newest"),
            # the few rows whose time awaits correction by the pull
            models.Index(
                fields=["device", "device_timestamp"],
                condition=models.Q(time_exact=False),
                name="telemetry_inexact_time",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key", "device_timestamp"], name="telemetry_dedup"
            )
        ]
        verbose_name = "telemetry reading"

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.device_timestamp:%Y-%m-%d %H:%M:%S}"


class ReadingCount(models.Model):
    """How many readings of an integration are stored with a time in one minute (UTC), kept by
    triggers on device_telemetry_history (telemetry.counts)."""

    # No foreign key: deleting an integration deletes its readings, whose triggers write here in
    # the same transaction, in whatever order Django's collector picks; a row left for a deleted
    # integration counts zero.
    integration_id = models.BigIntegerField()
    minute = models.DateTimeField()
    readings = models.BigIntegerField()

    class Meta:
        db_table = "telemetry_minute_counts"
        constraints = [
            models.UniqueConstraint(fields=["integration_id", "minute"], name="minute_count_key")
        ]

    def __str__(self) -> str:
        return f"{self.integration_id} @ {self.minute:%Y-%m-%d %H:%M}: {self.readings}"
