"""`runsync` and `reconcile` as staff read them (issue 12): the summary table, `-v 2` page
lines, and the progress bar on a terminal that stays on screen."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from integrations.models import ActivityLog


class TerminalOut(StringIO):
    """Stdout as a terminal: isatty() is True, so the bar is drawn."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def seeded(golioth, golioth_integration):
    """3 devices with 40 readings each in the last hour: several pages of 100."""
    now = timezone.now()
    golioth.seed_fleet(3, 40, start=now - timedelta(minutes=50), end=now - timedelta(minutes=5))
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (now - timedelta(hours=1)).isoformat(),
    }
    golioth_integration.save()
    return golioth_integration


def run(command: str, *args: str, out: StringIO | None = None, **options) -> str:
    out = out if out is not None else StringIO()
    call_command(command, *args, stdout=out, **options)
    return out.getvalue()


def test_runsync_summary_is_an_aligned_table(seeded):
    output = run("runsync", "sim-fleet")

    entry = ActivityLog.objects.get(activity_type="sync_import")
    lines = output.splitlines()
    assert lines[0] == "sim-fleet: success"
    rows = dict(re.match(r"  (\S.*?\S)\s{2,}(\S.*)$", line).groups() for line in lines[1:])
    assert list(rows) == [
        "window",
        "pages / calls",
        "readings",
        "devices",
        "duration",
        "cursor",
        "activity entry",
    ]
    assert rows["readings"] == "120 fetched, 120 inserted, 0 duplicate"
    assert rows["pages / calls"].startswith("2 pages, ")
    assert rows["devices"] == "3"
    assert rows["cursor"].startswith("moved to ")
    assert rows["activity entry"] == (
        f"#{entry.pk}  http://127.0.0.1:8000/admin/integrations/activitylog/{entry.pk}/change/"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \.\. .* UTC", rows["window"])
    # One column of values: every row's value starts at the same place.
    assert (
        len({line.index(value) for line, value in zip(lines[1:], rows.values(), strict=True)}) == 1
    )
    assert "=" not in output and "\r" not in output  # no key=value line, no bar off a terminal


def test_runsync_verbosity_2_prints_every_page(seeded):
    output = run("runsync", "sim-fleet", verbosity=2)

    pages = [line for line in output.splitlines() if line.startswith("  page ")]
    assert len(pages) == 2
    assert pages[0].startswith("  page 1: 100 readings, device ")
    assert pages[1].startswith("  page 2: 20 readings, device ")
    assert pages[1].endswith("(total 120)")
    assert re.search(r"\d\d:\d\d:\d\d \.\. \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", pages[0])
    assert output.index("  page 2:") < output.index("sim-fleet: success")


def test_runsync_default_verbosity_prints_no_pages(seeded):
    assert "  page " not in run("runsync", "sim-fleet")


def test_runsync_draws_a_bar_on_a_terminal_and_leaves_it(seeded):
    output = run("runsync", "sim-fleet", out=TerminalOut())

    bar, _, summary = output.rpartition("sim-fleet: success\n")
    # The bar's last state stays above the summary: the readings, the rate and the pages.
    last = bar.split("\r")[-1]
    assert last.startswith("sim-fleet: 120 readings ")
    assert "readings/s" in last
    assert "pages=2" in last
    assert last.endswith("\n")
    assert "  readings        120 fetched, 120 inserted, 0 duplicate" in summary


def test_runsync_bar_and_page_lines_together_on_a_terminal(seeded):
    output = run("runsync", "sim-fleet", out=TerminalOut(), verbosity=2)

    assert "  page 1: 100 readings" in output and "  page 2: 20 readings" in output
    assert "pages=2" in output


def test_runsync_verbosity_0_keeps_the_key_value_line(seeded):
    output = run("runsync", "sim-fleet", out=TerminalOut(), verbosity=0)

    assert output.startswith("sim-fleet: success devices=3 fetched=120 inserted=120 ")
    assert "readings/s" not in output


def test_reconcile_summary_table_bar_and_pages(seeded, golioth):
    run("runsync", "sim-fleet", verbosity=0)
    device = golioth.readings()[0].device_external_id
    when = timezone.now() - timedelta(minutes=30)
    for n in range(3):  # a back-dated upload the pull never saw
        golioth.add_reading(device, when + timedelta(seconds=n), {"late": n})

    output = run("reconcile", "sim-fleet", "--since", "2h", out=TerminalOut(), verbosity=2)

    entry = ActivityLog.objects.get(activity_type="reconcile")
    bar, _, summary = output.rpartition("sim-fleet: success\n")
    assert "  page 1: " in bar and f"device {device}" in bar
    assert "pages=1" in bar.split("\r")[-1]
    rows = summary.splitlines()
    assert rows[0].startswith("  window ")
    assert any(r.startswith("  readings ") and "3 recovered" in r for r in rows)
    assert any(r.startswith("  verified ") and "complete through" in r for r in rows)
    assert rows[-1].endswith(f"/admin/integrations/activitylog/{entry.pk}/change/")
