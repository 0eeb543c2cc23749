"""Every public name the packages export says what it promises in a docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import actors
import runtime

MODULES = sorted(
    {
        info.name
        for package in (runtime, actors)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if info.name != "runtime.adapters.mt5"  # Windows only: importing it elsewhere is refused by design
    }
)


def public_members(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        yield f"{module.__name__}.{name}", obj
        if inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if inspect.isfunction(function):
                    yield f"{module.__name__}.{name}.{attr}", function


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    missing = [
        qualified
        for qualified, obj in public_members(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (inspect.getdoc(obj) or "").strip()
    ]
    assert not missing, f"no docstring: {missing}"


def test_the_issue_names_are_importable_from_the_packages():
    for name in ("DrawdownTracker", "max_drawdown", "MaxDrawdownGuard", "MinEquityGuard", "DailyLossGuard",
                 "GuardState", "TradingState", "EventType", "Event", "HeartbeatMetrics", "Settings", "Broker",
                 "PaperBroker", "enforce_max_drawdown", "min_equity_guard"):
        assert hasattr(runtime, name), name
    for name in ("Supervisor", "LoopActor", "GuardActor", "HeartbeatActor", "EmitterActor",
                 "start_trading_system", "TradingSystem"):
        assert hasattr(actors, name), name


def test_the_windows_only_broker_refuses_to_load_here_and_names_the_paper_broker():
    import sys

    if sys.platform == "win32":
        pytest.skip("MetaTrader 5 loads on Windows")
    with pytest.raises(ImportError, match="PaperBroker"):
        importlib.import_module("runtime.adapters.mt5")
