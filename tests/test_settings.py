"""Settings: file < environment < arguments, the old variable names, errors that name the culprit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from strategies import guard_settings
from support.processes import run

from runtime import DailyLossGuard, MaxDrawdownGuard, MinEquityGuard, RiskMonitor, Settings, SettingsError

TOKEN = "123456:AAE-very-secret-token"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tradewarden.toml"
    path.write_text(text)
    return path


# --- precedence ---------------------------------------------------------------------------------


def test_defaults_apply_with_no_file_no_environment_and_no_arguments():
    loaded = Settings.load(environ={})
    assert loaded == Settings()
    assert (loaded.max_drawdown_percent, loaded.min_equity, loaded.heartbeat_interval_seconds) == (20.0, 500.0, 10.0)


def test_the_environment_beats_the_file_and_arguments_beat_both(tmp_path):
    config = write(tmp_path, "max_drawdown_percent = 10.0\nmin_equity = 100.0\nloop_id = 'from-file'\n")
    environ = {"MAX_DRAWDOWN_PERCENT": "15", "MIN_EQUITY": "200"}
    loaded = Settings.load(config, environ=environ, min_equity=300.0)
    assert loaded.loop_id == "from-file"  # only in the file
    assert loaded.max_drawdown_percent == 15.0  # file < environment
    assert loaded.min_equity == 300.0  # environment < argument


def test_a_file_value_is_used_when_nothing_overrides_it(tmp_path):
    config = write(
        tmp_path, "heartbeat_interval_seconds = 2.5\ndaily_loss_percent = 4\ntrading_timezone = 'Europe/London'\n"
    )
    loaded = Settings.load(config, environ={})
    assert loaded.heartbeat_interval_seconds == 2.5
    assert loaded.daily_loss_percent == 4
    assert loaded.trading_timezone == "Europe/London"


def test_a_tradewarden_table_in_the_file_is_read(tmp_path):
    config = write(tmp_path, "[tradewarden]\nmax_drawdown_percent = 12.5\n")
    assert Settings.load(config, environ={}).max_drawdown_percent == 12.5


@pytest.mark.parametrize(
    ("variable", "raw", "field", "value"),
    [
        ("HEARTBEAT_INTERVAL_SECONDS", "30", "heartbeat_interval_seconds", 30.0),
        ("MAX_DRAWDOWN_PERCENT", "12.5", "max_drawdown_percent", 12.5),
        ("MIN_EQUITY_GBP", "750", "min_equity", 750.0),
        ("MIN_EQUITY", "800", "min_equity", 800.0),
        ("DRAWDOWN_TRAILING", "no", "drawdown_trailing", False),
        ("LOG_JSON", "ON", "log_json", True),
        ("STATSD_PORT", "9125", "statsd_port", 9125),
        ("DAILY_LOSS_PERCENT", "none", "daily_loss_percent", None),
        ("GUARD_WARN_FRACTION", " 0.8 ", "guard_warn_fraction", 0.8),
    ],
)
def test_environment_variables_including_the_old_names_set_their_field(variable, raw, field, value):
    assert getattr(Settings.load(environ={variable: raw}), field) == value


def test_an_unrelated_environment_variable_is_ignored():
    assert Settings.load(environ={"PATH": "/bin", "MAX_DRAWDOWN": "3"}) == Settings()


# --- bad values ---------------------------------------------------------------------------------


def test_a_malformed_toml_file_is_refused_naming_the_file(tmp_path):
    config = write(tmp_path, "max_drawdown_percent = = 10\n")
    with pytest.raises(SettingsError, match=rf"{config.name}.*not valid TOML"):
        Settings.load(config, environ={})


def test_a_missing_config_file_is_refused_naming_it(tmp_path):
    with pytest.raises(SettingsError, match="missing.toml.*does not exist"):
        Settings.load(tmp_path / "missing.toml", environ={})


def test_an_unknown_key_in_the_file_is_refused_naming_the_key_and_listing_known_ones(tmp_path):
    config = write(tmp_path, "max_drawdown_pct = 10\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'max_drawdown_pct'; known: .*max_drawdown_percent"):
        Settings.load(config, environ={})


def test_an_unknown_argument_is_refused_naming_it():
    with pytest.raises(SettingsError, match="unknown setting 'max_drawdown'"):
        Settings.load(environ={}, max_drawdown=10)


def test_a_bad_value_in_the_file_is_refused_naming_the_file_key_and_value(tmp_path):
    config = write(tmp_path, "max_drawdown_percent = 150\n")
    with pytest.raises(SettingsError, match=r"tradewarden.toml: max_drawdown_percent.*\(0, 100\], got 150"):
        Settings.load(config, environ={})


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("HEARTBEAT_INTERVAL_SECONDS", "soon", r"HEARTBEAT_INTERVAL_SECONDS='soon': expected a number"),
        ("HEARTBEAT_INTERVAL_SECONDS", "nan", r"HEARTBEAT_INTERVAL_SECONDS='nan'.*finite.*nan"),
        ("HEARTBEAT_INTERVAL_SECONDS", "-5", r"HEARTBEAT_INTERVAL_SECONDS='-5'.*must be > 0, got -5"),
        ("MAX_DRAWDOWN_PERCENT", "150", r"MAX_DRAWDOWN_PERCENT='150'.*\(0, 100\], got 150"),
        ("MAX_DRAWDOWN_PERCENT", "-3", r"MAX_DRAWDOWN_PERCENT='-3'.*got -3"),
        ("MIN_EQUITY_GBP", "-1", r"MIN_EQUITY_GBP='-1'.*min_equity must be >= 0, got -1"),
        ("MIN_EQUITY_GBP", "lots", r"MIN_EQUITY_GBP='lots': expected a number$"),
        ("DRAWDOWN_TRAILING", "maybe", r"DRAWDOWN_TRAILING='maybe': expected true or false"),
        ("STATSD_PORT", "70000", r"STATSD_PORT='70000'.*port number.*70000"),
        ("STATSD_PORT", "81.5", r"STATSD_PORT='81.5': expected a whole number"),
        ("TRADING_TIMEZONE", "Mars/Olympus", r"TRADING_TIMEZONE='Mars/Olympus'.*IANA.*Mars/Olympus"),
        ("GUARD_WARN_FRACTION", "1.5", r"GUARD_WARN_FRACTION='1.5'.*\(0, 1\), got 1.5"),
        ("LOOP_ID", "  ", r"LOOP_ID='  '.*loop_id must be a non-empty string"),
    ],
)
def test_a_bad_environment_value_is_refused_naming_the_variable_and_value(variable, raw, message):
    with pytest.raises(SettingsError, match=message):
        Settings.load(environ={variable: raw})


def test_a_bad_argument_is_refused_naming_the_argument():
    with pytest.raises(SettingsError, match=r"argument min_equity: min_equity must be >= 0, got -10"):
        Settings.load(environ={}, min_equity=-10)


def test_a_bad_argument_is_named_as_the_caller_names_it():
    with pytest.raises(SettingsError) as refused:
        Settings.load(environ={}, override_names={"min_equity": "--min-equity"}, min_equity=-10, loop_id="x")
    assert str(refused.value) == "argument --min-equity: min_equity must be >= 0, got -10"


def test_a_heartbeat_timeout_not_shorter_than_the_interval_is_refused():
    with pytest.raises(ValueError, match=r"heartbeat_timeout_seconds must be shorter.*got 10"):
        Settings(heartbeat_interval_seconds=5.0, heartbeat_timeout_seconds=10.0)


def test_a_non_boolean_switch_is_refused():
    with pytest.raises(TypeError, match=r"^drawdown_trailing must be true or false, got 'yes' \(str\)$"):
        Settings(drawdown_trailing="yes")


def test_a_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


# --- the token stays secret -----------------------------------------------------------------------


def test_the_telegram_token_never_appears_in_repr_or_str():
    loaded = Settings.load(environ={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "42"})
    assert loaded.telegram_bot_token == TOKEN
    assert TOKEN not in repr(loaded) and TOKEN not in str(loaded)
    assert "telegram_bot_token='***'" in repr(loaded)
    assert "telegram_chat_id='42'" in repr(loaded)


def test_the_telegram_token_is_not_in_the_error_about_another_setting():
    with pytest.raises(SettingsError) as raised:
        Settings.load(environ={"TELEGRAM_BOT_TOKEN": TOKEN, "MAX_DRAWDOWN_PERCENT": "500"})
    assert TOKEN not in str(raised.value)
    assert "MAX_DRAWDOWN_PERCENT" in str(raised.value)


def test_no_token_reads_as_none_in_repr():
    assert "telegram_bot_token=None" in repr(Settings())


# --- derived values -------------------------------------------------------------------------------


def test_the_heartbeat_timeout_defaults_to_half_the_interval():
    assert Settings(heartbeat_interval_seconds=8.0).heartbeat_timeout == 4.0
    assert Settings(heartbeat_interval_seconds=8.0, heartbeat_timeout_seconds=1.0).heartbeat_timeout == 1.0


def test_a_stall_defaults_to_three_of_the_slower_interval():
    assert Settings(heartbeat_interval_seconds=10.0, loop_interval_seconds=1.0).stall_after == 30.0
    assert Settings(heartbeat_interval_seconds=1.0, loop_interval_seconds=4.0).stall_after == 12.0
    assert Settings(stall_after_seconds=7.0).stall_after == 7.0


def test_the_guards_follow_the_settings():
    rules = Settings(
        max_drawdown_percent=15.0,
        drawdown_trailing=False,
        min_equity=250.0,
        daily_loss_percent=3.0,
        trading_timezone="Asia/Tokyo",
        guard_warn_fraction=0.75,
    ).guards()
    assert rules == [
        MaxDrawdownGuard(15.0, trailing=False, warn_at=0.75),
        MinEquityGuard(250.0, warn_at=0.75),
        DailyLossGuard(3.0, timezone="Asia/Tokyo", warn_at=0.75),
    ]


def test_no_daily_loss_guard_without_a_daily_loss_limit():
    assert [rule.name for rule in Settings().guards()] == ["max_drawdown", "min_equity"]


@settings(max_examples=50)
@given(config=guard_settings())
def test_every_drawn_guard_setting_makes_guards_a_monitor_accepts(config):
    rules = config.guards()
    monitor = RiskMonitor(1000.0, rules)
    assert len(monitor.guards) == (3 if config.daily_loss_percent is not None else 2)
    assert rules[0].limit_percent == config.max_drawdown_percent
    assert rules[1].min_equity == config.min_equity


# --- packaging ------------------------------------------------------------------------------------


def test_runtime_imports_without_hypothesis_and_does_not_load_runtime_testing():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import runtime\n"
        "assert 'runtime.testing' not in sys.modules, 'runtime imported runtime.testing'\n"
        "try:\n"
        "    import runtime.testing\n"
        "except ImportError:\n"
        "    print('ok')\n"
    )
    result = run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_every_public_strategy_has_a_docstring_and_the_module_a_usage_example():
    import runtime.testing as testing

    assert "Usage::" in (testing.__doc__ or "")
    for name in testing.__all__:
        obj = getattr(testing, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
