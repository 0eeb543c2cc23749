"""The position stop and the cooldown in Settings and the run config's TOML: off unless set, read
from the file and the environment, and refused where they enter naming the source and the value."""

from __future__ import annotations

import pytest

from actors.service.config import ConfigError, RunConfig
from runtime import Settings, SettingsError
from runtime.risk.cooldown import Cooldown
from runtime.risk.position_stop import PositionStop


def test_the_stop_and_the_cooldown_are_off_by_default():
    settings = Settings.load(environ={})
    assert (settings.position_stop(), settings.cooldown()) == (None, None)
    assert (settings.position_stop_basis, settings.cooldown_seconds) == ("equity", None)


def test_they_come_from_the_run_configs_toml_and_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "run.toml"
    config.write_text(
        "[tradewarden]\nstate_db = 'state.db'\nposition_stop_percent = 2.5\nposition_stop_basis = 'entry'\n"
        "contract_size = 100000\ncooldown_rules = 'daily_loss, runaway_loop'\ntrading_timezone = 'Europe/London'\n"
    )
    monkeypatch.setenv("COOLDOWN_SECONDS", "120")
    settings = RunConfig.load(config).settings
    assert settings.position_stop() == PositionStop(2.5, "entry", 100_000.0)
    assert settings.cooldown() == Cooldown(frozenset({"daily_loss", "runaway_loop"}), 120.0, "Europe/London")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"POSITION_STOP_PERCENT": "0"}, "POSITION_STOP_PERCENT='0': position_stop_percent must be a percentage in (0, 100], got 0.0"),
        ({"POSITION_STOP_PERCENT": "half"}, "POSITION_STOP_PERCENT='half': expected a number or off (also none, or empty)"),
        ({"PAPER_MAX_LEVERAGE": "abc"}, "PAPER_MAX_LEVERAGE='abc': expected a number or off (also none, or empty)"),
        ({"POSITION_STOP_BASIS": "margin"}, "POSITION_STOP_BASIS='margin': position_stop_basis must be 'equity' or 'entry', got 'margin'"),
        ({"COOLDOWN_SECONDS": "0"}, "COOLDOWN_SECONDS='0': cooldown_seconds must be > 0, got 0.0"),
        ({"COOLDOWN_SECONDS": "1e12"}, "COOLDOWN_SECONDS='1e12': cooldown_seconds must be at most 31,622,400 (366 days): "
                                       "leave it unset to keep a halt until an operator resumes, got 1000000000000.0"),
        ({"COOLDOWN_RULES": "max_drawdown"}, "settings: cooldown_seconds must be set for a cooldown of max_drawdown, got None"),
    ],
)
def test_a_bad_value_is_refused_naming_its_source_and_value(environ, message):
    with pytest.raises(SettingsError) as info:
        Settings.load(environ=environ)
    assert str(info.value) == message


def test_a_bad_value_in_the_run_config_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[tradewarden]\nstate_db = 'state.db'\ncooldown_rules = ['daily_loss']\n")
    with pytest.raises(ConfigError) as info:
        RunConfig.load(config)
    assert str(info.value) == f"{config}: cooldown_rules: cooldown_rules must be rule names separated by commas, got ['daily_loss']"
