"""The README's Python examples run as written, and its settings table names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from runtime import LoopTotals, Settings, TradingState
from runtime.adapters.postgres import PostgresStore, StaleEpochError

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_starting_example_runs_and_trades(capsys):
    [start] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "system = start_trading_system(" in b]
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


def test_the_many_accounts_example_runs_on_a_postgres_server_and_fences_the_older_incarnation(
    postgres_dsn: str, pg_schema: str
) -> None:
    [block] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "store.claim(account)" in b]
    # The example's server and schema become the test cluster's and this test's own.
    code = re.sub(r"^dsn = .*$", f"dsn = {postgres_dsn!r}", block, flags=re.M)
    code = code.replace("PostgresStore(dsn)", f"PostgresStore(dsn, schema={pg_schema!r})")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    systems = namespace["systems"]
    try:
        states = {account: system.guard_status().state.trading_state for account, system in systems.items()}
        assert states == {"acct-1": TradingState.ACTIVE, "acct-2": TradingState.ACTIVE}
        with PostgresStore(postgres_dsn, schema=pg_schema) as newer:
            newer.claim("acct-1")
            stale = (
                r"^postgres .*: saving the totals of loop 'acct-1' refused: loop 'acct-1' was claimed by a newer "
                r"incarnation \(epoch 2, this store holds epoch 1\)$"
            )
            with pytest.raises(StaleEpochError, match=stale):
                systems["acct-1"].store.save_loop_totals("acct-1", LoopTotals(1, 1))
    finally:
        for system in systems.values():
            system.stop()
