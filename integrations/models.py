from __future__ import annotations

import copy
import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings as django_settings
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from integrations import crypto
from integrations.sync_settings import SyncSettings


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


# A secret shorter than this shows no characters at all: its last four would give too much away.
HINT_MIN_LENGTH = 20


def secret_hint(raw: str) -> str:
    return raw[-4:] if len(raw) >= HINT_MIN_LENGTH else ""


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class DeviceIntegration(models.Model):
    class IntegrationType(models.TextChoices):
        GOLIOTH = "golioth", "Golioth"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ERROR = "error", "Error"

    name = models.CharField(max_length=200, unique=True)
    integration_type = models.CharField(
        max_length=32, choices=IntegrationType.choices, default=IntegrationType.GOLIOTH
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    project_id = models.CharField("Golioth project id", max_length=200)
    base_url = models.URLField("API base URL", default="https://api.golioth.io")
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_hint = models.CharField(max_length=4, blank=True, editable=False)
    settings = models.JSONField(default=dict, blank=True)

    # Sync state, written only by integrations.pull.sync.
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_status = models.CharField(max_length=16, blank=True)
    sync_error = models.TextField(blank=True)
    sync_cursor = models.DateTimeField(
        null=True, blank=True, help_text="End of the last committed sync window."
    )
    locked_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=200, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while a queued run waits for a worker."
    )
    last_queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a run was last queued; the interval counts from it."
    )
    last_skip_reason = models.CharField(max_length=200, blank=True)
    # Reconciliation state, written only by integrations.pull.reconcile.
    last_reconcile_at = models.DateTimeField(null=True, blank=True)
    verified_through = models.DateTimeField(
        "verified complete through",
        null=True,
        blank=True,
        help_text="End of the newest reconciled window in which no Golioth reading was missing.",
    )

    # Push.
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token)
    webhook_enabled = models.BooleanField(default=False)
    # [{"id", "hash", "hint", "created"}]: sha256 of each active secret, never the secret.
    webhook_secrets = models.JSONField(default=list, blank=True, editable=False)
    webhook_rejected_count = models.PositiveIntegerField(default=0, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "device_integrations"
        ordering = ["name"]
        permissions = [
            ("run_sync", "Can run syncs, backfills, reconciliation and connection tests"),
        ]

    def __str__(self) -> str:
        return self.name

    # -- settings ----------------------------------------------------------------------------

    @property
    def sync_settings(self) -> SyncSettings:
        # Parsed once per value of `settings` (a webhook reads it several times a request);
        # compared by value, so a change made in place is seen too.
        memo = self.__dict__.get("_sync_settings_memo")
        if memo is not None and memo[0] == self.settings:
            return memo[1]
        parsed = SyncSettings.from_json(self.settings)
        self.__dict__["_sync_settings_memo"] = (copy.deepcopy(self.settings), parsed)
        return parsed

    @sync_settings.setter
    def sync_settings(self, value: SyncSettings) -> None:
        self.settings = value.to_json()

    # -- API key -----------------------------------------------------------------------------

    def set_api_key(self, raw: str) -> None:
        self.api_key_encrypted = crypto.encrypt(raw)
        self.api_key_hint = secret_hint(raw)

    def get_api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    @property
    def api_key_display(self) -> str:
        if not self.api_key_encrypted:
            return "(not set)"
        return f"••••{self.api_key_hint}" if self.api_key_hint else "•••• (set)"

    # -- webhook secrets ---------------------------------------------------------------------

    def add_webhook_secret(self, raw: str | None = None) -> str:
        """Add an active secret (a new random one unless given) and return it: shown once."""
        raw = raw or secrets.token_urlsafe(32)
        self.webhook_secrets = [
            *self.webhook_secrets,
            {
                "id": uuid.uuid4().hex[:8],
                "hash": hash_secret(raw),
                "hint": secret_hint(raw),
                "created": timezone.now().isoformat(),
            },
        ]
        return raw

    def remove_webhook_secrets(self, ids: list[str]) -> None:
        self.webhook_secrets = [s for s in self.webhook_secrets if s["id"] not in ids]

    def check_webhook_secret(self, raw: str | None) -> bool:
        """Constant-time compare against every active secret, so secrets rotate without downtime."""
        if not raw:
            return False
        candidate = hash_secret(raw)
        matched = False
        for secret in self.webhook_secrets:
            matched |= constant_time_compare(candidate, secret["hash"])
        return matched

    @property
    def webhook_path(self) -> str:
        return reverse("golioth-webhook", kwargs={"token": self.webhook_token})

    @property
    def webhook_url(self) -> str:
        return f"{django_settings.GSYNC_PUBLIC_URL}{self.webhook_path}"


class ActivityLogManager(models.Manager["ActivityLog"]):
    """The writers of activity entries: `log` a finished one, `start` + `finish` work under way,
    `minute_entry` the webhook's entry of a minute."""

    def log(self, integration: DeviceIntegration | None, **fields: Any) -> ActivityLog:
        """A finished entry."""
        fields.setdefault("completed_at", timezone.now())
        fields.setdefault("started_at", fields["completed_at"])
        if fields.get("response_time_ms") is None and fields.get("started_at"):
            elapsed = fields["completed_at"] - fields["started_at"]
            fields["response_time_ms"] = int(elapsed.total_seconds() * 1000)
        return self.create(integration=integration, **fields)

    def start(self, integration: DeviceIntegration, **fields: Any) -> ActivityLog:
        """An entry for work under way (status `started`); `finish` completes the same row, so
        a run is one entry however it ends."""
        fields.update(status=ActivityLog.Status.STARTED, completed_at=None)
        fields.setdefault("started_at", timezone.now())
        return self.create(integration=integration, **fields)

    def finish(
        self,
        entry: ActivityLog,
        *,
        status: str,
        completed_at: datetime | None = None,
        **fields: Any,
    ) -> ActivityLog:
        """Complete a `start`ed entry with its outcome and counts (now, unless `completed_at`)."""
        fields.update(status=status, completed_at=completed_at or timezone.now())
        elapsed = fields["completed_at"] - entry.started_at
        fields.setdefault("response_time_ms", max(0, int(elapsed.total_seconds() * 1000)))
        for name, value in fields.items():
            setattr(entry, name, value)
        entry.save(update_fields=list(fields))
        return entry

    def abandon_started(
        self, integration: DeviceIntegration, *, activity_types: list[str], reason: str
    ) -> int:
        """Fail entries left `started` by work that died (a killed worker never finishes)."""
        stale = self.filter(
            integration=integration,
            status=ActivityLog.Status.STARTED,
            activity_type__in=activity_types,
        )
        failed, now = ActivityLog.Status.FAILED, timezone.now()
        return stale.update(status=failed, completed_at=now, error_message=reason)

    def minute_entry(self, integration: DeviceIntegration, *, at: datetime) -> int:
        """The id of `integration`'s `webhook_received` entry for the minute of `at`, added
        `started` by the minute's first delivery; its counts are filled in once the minute is
        over (integrations.push.minutes.roll_up_webhook_minutes).

        A minute has one entry, its counts being the whole minute's: the unique constraint
        `activity_one_webhook_minute` makes the loser of a race of first writers (two
        processes) find the winner's entry.
        """
        minute = at.replace(second=0, microsecond=0)
        entries = self.filter(
            integration=integration,
            activity_type=ActivityLog.ActivityType.WEBHOOK_RECEIVED,
            started_at=minute,
        )
        found = entries.values_list("pk", flat=True).first()
        if found is not None:
            return found
        try:
            # A savepoint, so a lost race leaves an enclosing transaction usable.
            with transaction.atomic():
                return self.start(
                    integration,
                    activity_type=ActivityLog.ActivityType.WEBHOOK_RECEIVED,
                    trigger=ActivityLog.Trigger.WEBHOOK,
                    started_at=minute,
                    message="Webhook deliveries received in this minute.",
                ).pk
        except IntegrityError:
            return entries.values_list("pk", flat=True).get()


class ActivityLog(models.Model):
    class ActivityType(models.TextChoices):
        SYNC_IMPORT = "sync_import", "Sync import"
        BACKFILL = "backfill", "Backfill"
        WEBHOOK_RECEIVED = "webhook_received", "Webhook received"
        TEST_CONNECTION = "test_connection", "Test connection"
        SYNC_SKIPPED = "sync_skipped", "Sync skipped"
        SETTINGS_CHANGED = "settings_changed", "Settings changed"
        STATUS_CHANGED = "status_changed", "Status changed"
        WEBHOOK_REPROCESSED = "webhook_reprocessed", "Webhook re-processed"
        RECONCILE = "reconcile", "Reconcile"

    class Status(models.TextChoices):
        STARTED = "started", "Started"
        SUCCESS = "success", "Success"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Direction(models.TextChoices):
        INCOMING = "incoming", "Incoming"
        OUTGOING = "outgoing", "Outgoing"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual (runsync)"
        ADMIN = "admin", "Admin"
        WEBHOOK = "webhook", "Webhook"

    integration = models.ForeignKey(
        DeviceIntegration, on_delete=models.CASCADE, related_name="activity", null=True
    )
    activity_type = models.CharField(max_length=32, choices=ActivityType.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    direction = models.CharField(
        max_length=16, choices=Direction.choices, default=Direction.INCOMING
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    message = models.TextField(blank=True)
    error_message = models.TextField(blank=True)
    devices_seen = models.PositiveIntegerField(default=0)
    readings_fetched = models.PositiveIntegerField(default=0)
    readings_inserted = models.PositiveIntegerField(default=0)
    readings_duplicate = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    # Webhook entries: the deliveries received (in the minute) or re-processed.
    deliveries = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    response_time_ms = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    objects = ActivityLogManager()

    class Meta:
        db_table = "integration_activity_log"
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["-started_at", "-id"], name="activity_newest"),
            models.Index(fields=["integration", "-started_at"], name="activity_integration_newest"),
            models.Index(fields=["activity_type", "-started_at"], name="activity_type_newest"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "started_at"],
                condition=models.Q(activity_type="webhook_received"),
                name="activity_one_webhook_minute",
            )
        ]
        verbose_name = "activity log entry"
        verbose_name_plural = "activity log"

    def __str__(self) -> str:
        who = self.integration.name if self.integration else "gsync"
        when = f"{self.started_at:%Y-%m-%d %H:%M:%S}"
        return f"{who}: {self.get_activity_type_display()} {self.status} at {when}"


class WebhookDelivery(models.Model):
    class Outcome(models.TextChoices):
        RECEIVED = "received", "Received (not yet processed)"
        QUEUED = "queued", "Queued (for an ingest worker)"
        PROCESSED = "processed", "Processed"
        DUPLICATE = "duplicate", "Duplicate"
        IGNORED = "ignored", "Ignored (not a reading)"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    integration = models.ForeignKey(
        DeviceIntegration, on_delete=models.CASCADE, related_name="deliveries"
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    headers = models.JSONField(default=dict, help_text="Request headers, secrets redacted.")
    body = models.BinaryField()
    content_type = models.CharField(max_length=200, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RECEIVED)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    readings_stored = models.PositiveIntegerField(default=0)
    readings_duplicate = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Null (and the device "") on rows stored before they were recorded, or not answered.
    response_status = models.SmallIntegerField(
        "HTTP status", null=True, blank=True, help_text="What the webhook answered the sender."
    )
    # db_default: the processes still running the previous release during an upgrade insert
    # deliveries without naming the column.
    device_external_id = models.CharField(
        "device",
        max_length=64,
        blank=True,
        db_default="",
        help_text="The reading's Golioth device id.",
    )

    class Meta:
        db_table = "webhook_deliveries"
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["outcome", "-received_at"], name="delivery_outcome_newest"),
            models.Index(
                fields=["integration", "-received_at"], name="delivery_integration_newest"
            ),
            models.Index(fields=["device_external_id"], name="delivery_device"),
            # The ingest workers' queue: small however many deliveries are kept.
            models.Index(
                fields=["id"],
                name="delivery_pending",
                condition=models.Q(outcome__in=["queued", "received"]),
            ),
        ]
        verbose_name_plural = "webhook deliveries"
        permissions = [("reprocess_webhookdelivery", "Can re-process webhook deliveries")]

    def __str__(self) -> str:
        return f"Delivery {self.pk} to {self.integration} ({self.outcome})"


class ConsistentBucket(models.Model):
    """A device-hour where Golioth counts more readings than gsync holds, yet re-reading it
    brought nothing new: Golioth holds some reading twice (two pipelines to LightDB Stream).

    Remembered with both counts, so the next reconcile passes over it instead of re-reading the
    same hour every time; a count that changes on either side makes it checked again.
    """

    integration = models.ForeignKey(
        DeviceIntegration, on_delete=models.CASCADE, related_name="consistent_buckets"
    )
    device_external_id = models.CharField(max_length=64)
    bucket_start = models.DateTimeField()
    golioth_count = models.PositiveIntegerField()
    local_count = models.PositiveIntegerField()
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "reconcile_consistent_buckets"
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "device_external_id", "bucket_start"],
                name="consistent_bucket_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.device_external_id} @ {self.bucket_start:%Y-%m-%d %H:%M}"


class Heartbeat(models.Model):
    """When a periodic job last ran (the dispatcher, the daily prune), one row per job.

    /healthz reads the dispatcher's row: a stopped scheduler or a dead worker shows as an old beat.
    """

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "gsync_heartbeats"

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
