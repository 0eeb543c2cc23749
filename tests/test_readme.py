"""The README's Python examples run as written, and its settings table names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from runtime import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_starting_example_runs_and_trades(capsys):
    [start] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "start_trading_system(" in b]
    namespace: dict = {}
    exec(compile(start, "README.md", "exec"), namespace)
    system = namespace["system"]
    assert system.wait(10)
    assert namespace["broker"].net_volume("EURUSD") == 1_000
    assert "peak_equity=10000.0" in capsys.readouterr().out


def test_the_settings_table_lists_every_setting_and_its_environment_variable():
    for field in attrs.fields(Settings):
        row = next((line for line in README.splitlines() if line.startswith(f"| `{field.name}` |")), None)
        assert row is not None, f"README's settings table lacks {field.name}"
        for variable in field.metadata["env"]:
            assert f"`{variable}`" in row, f"README does not give {variable} for {field.name}"
