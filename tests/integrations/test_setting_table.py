"""Each scalar setting is one row of integrations.setting_table.SETTINGS: these tests check that a
row alone gives it parsing, bounds, JSON, a form field, an admin fieldset and a command flag."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from integrations.admin.forms import IntegrationForm
from integrations.setting_table import SETTINGS
from integrations.sync_settings import SettingsError, SyncSettings

BOUNDED = [s for s in SETTINGS if s.maximum is not None]
# Other settings at their most permissive, so a rule between two settings (readings kept longer
# than the reconcile lookback) does not refuse a value that is within its own bounds.
ROOM = {"reconcileLookbackHours": 1, "overlapSeconds": 0}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_default_is_the_tables_and_round_trips_through_json(setting):
    defaults = SyncSettings()
    assert getattr(defaults, setting.attr) == setting.default
    assert SyncSettings.from_json(defaults.to_json()) == defaults
    assert setting.key in defaults.to_json()


@pytest.mark.parametrize("setting", BOUNDED, ids=lambda s: s.key)
def test_bounds_refuse_one_past_each_end_naming_the_key(setting):
    step = 1 if setting.kind == "int" else 0.01
    for wrong in (setting.minimum - step, setting.maximum + step):
        with pytest.raises(SettingsError) as refused:
            SyncSettings.from_json({setting.key: wrong})
        assert list(refused.value.errors) == [setting.key]
        assert "must be between" in refused.value.errors[setting.key]
    for right in (setting.minimum, setting.maximum):
        if setting.check and setting.check(right):
            continue
        parsed = SyncSettings.from_json({**ROOM, setting.key: right})
        assert getattr(parsed, setting.attr) == right


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_wrong_type_is_refused_with_the_kinds_words(setting):
    wrong = "soon" if setting.kind != "datetime" else "not a date"
    with pytest.raises(SettingsError) as refused:
        SyncSettings.from_json({setting.key: wrong})
    assert setting.key in refused.value.errors


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_form_field_admin_page_and_command_flag_come_from_the_row(setting, admin_client, capsys):
    field = IntegrationForm.base_fields[setting.attr]
    assert (field.label, field.help_text) == (setting.label, setting.help)

    page = admin_client.get("/admin/integrations/deviceintegration/add/").content.decode()
    assert f'name="{setting.attr}"' in page
    assert setting.label in page

    with pytest.raises(SystemExit):
        call_command("integration", "create", "--help")
    flag = "--" + setting.attr.replace("_", "-")
    assert flag in capsys.readouterr().out


def test_reconcile_interval_rule_beyond_the_bounds():
    with pytest.raises(SettingsError, match="must be 0 \\(off\\) or at least 5"):
        SyncSettings.from_json({"reconcileIntervalMinutes": 3})
    assert SyncSettings.from_json({"reconcileIntervalMinutes": 0}).reconcile_interval_minutes == 0


def test_out_of_bounds_numbers_are_quoted_as_typed():
    """Whole numbers stay whole in the message (a `:g` format said "got 1e+09")."""
    with pytest.raises(SettingsError) as refused:
        SyncSettings.from_json({"syncIntervalSeconds": 1_000_000_000})
    assert refused.value.errors["syncIntervalSeconds"] == (
        "must be between 60 and 604800 (got 1000000000)"
    )
    with pytest.raises(SettingsError) as refused:
        SyncSettings.from_json({"maxRequestsPerSecond": 0.05})
    assert refused.value.errors["maxRequestsPerSecond"] == "must be between 0.1 and 1000 (got 0.05)"
