"""The supervision package knows nothing of trading: it imports only the clock, metrics, backoff
and errors from `runtime`, and nothing from the trading actors' messages."""

from __future__ import annotations

import ast
import pathlib

import actors.supervision

PACKAGE = pathlib.Path(actors.supervision.__file__).parent
ALLOWED_RUNTIME = {"runtime.clock", "runtime.adapters.system_clock", "runtime.metrics", "runtime.backoff", "runtime.errors"}
FORBIDDEN = ("runtime.events", "runtime.risk", "actors.messages")


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_supervision_module_imports_trading_events_risk_or_the_trading_messages():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 7, modules
    for module in modules:
        imported = _imports(module)
        bad = sorted(n for n in imported if n.startswith(FORBIDDEN))
        assert bad == [], f"{module.name} imports {bad}"
        runtime = {n for n in imported if n == "runtime" or n.startswith("runtime.")}
        assert runtime <= ALLOWED_RUNTIME, f"{module.name} imports {sorted(runtime - ALLOWED_RUNTIME)} from runtime"
