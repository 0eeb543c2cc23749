"""Shared test setup. Kept tiny on purpose: add fixtures below as needed.

Puts this folder on ``sys.path`` so test modules can ``import strategies`` whatever pytest's
import mode or rootdir.
"""

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Fixtures for the real services the integration tests talk to, for every test module.
from support.bot_api_server import bot_api  # noqa: E402, F401
from support.live_bot import bots  # noqa: E402, F401
from support.postgres import pg_schema, postgres_dsn, postgres_server  # noqa: E402, F401
from support.ray_cluster import ray_cluster, served_fleet  # noqa: E402, F401
from support.statsd_daemon import statsd_daemon  # noqa: E402, F401

# Hypothesis's own timing checks (a 200 ms deadline per example, "input generation is slow") are
# timed assertions, and the suite keeps none: on a loaded 2-core machine they fail correct code.
# What a property checks stays exactly the same; only those clocks are off, for every test.
settings.register_profile(
    "tradewarden", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("tradewarden")


@pytest.fixture
def trees():
    """Guard trees a test makes and appends here, each stopped after the test."""
    made: list = []
    yield made
    for tree in made:
        tree.stop()
