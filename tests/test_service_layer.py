"""The service layer sits on top: nothing in `runtime` or the trading actors loads it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import actors
import runtime

_BELOW = sorted(
    info.name
    for package in (runtime, actors)
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    if not info.name.startswith("actors.service") and info.name != "runtime.adapters.mt5"
)


def test_no_module_below_the_service_layer_loads_it():
    # One process imports every module below; any of them pulling the service in shows up here.
    probe = (
        f"import importlib, sys; [importlib.import_module(m) for m in {_BELOW!r}]; "
        "print(sorted(m for m in sys.modules if m.startswith('actors.service')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", f"the modules below loaded {out.stdout.strip()}"
