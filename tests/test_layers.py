"""The folders say what a file may do: the core loads no adapter and no I/O library."""

from __future__ import annotations

import sys

import pytest
from support.processes import run

_CORE_MODULES = [
    "runtime",
    "runtime.alerts",
    "runtime.broker",
    "runtime.clock",
    "runtime.events",
    "runtime.heartbeat",
    "runtime.metrics",
    "runtime.settings",
    "runtime.signals",
    "runtime.store",
    "runtime.validation",
    "runtime.risk.drawdown",
    "runtime.risk.guards",
    "runtime.risk.monitor",
    "runtime.risk.liquidation",
]
_FORBIDDEN = ["runtime.adapters", "runtime.replay", "actors", "httpx", "statsd", "sqlite3", "matplotlib", "hypothesis", "pykka"]


@pytest.mark.parametrize("module", _CORE_MODULES)
def test_importing_a_core_module_loads_no_adapter_and_no_io_library(module):
    probe = (
        f"import sys; import {module}; "
        f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {_FORBIDDEN!r})))"
    )
    out = run([sys.executable, "-c", probe], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


def test_an_adapter_name_on_runtime_is_loaded_on_first_use():
    probe = (
        "import sys, runtime; before = 'runtime.adapters.sqlite' in sys.modules; "
        "store = runtime.SqliteStore; print(before, 'runtime.adapters.sqlite' in sys.modules, store.__module__)"
    )
    out = run([sys.executable, "-c", probe], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "runtime.adapters.sqlite"]


def test_an_unknown_name_on_runtime_is_an_attribute_error():
    import runtime

    with pytest.raises(AttributeError, match=r"^module 'runtime' has no attribute 'NoSuchThing'$"):
        runtime.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("module", ["actors", "actors.system", "actors.service.cli", "actors.fleet", "runtime.settings"])
def test_nothing_but_the_fleet_loads_ray_and_the_fleet_only_when_it_connects(module):
    probe = f"import sys; import {module}; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    out = run([sys.executable, "-c", probe], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"
