"""Shared test setup. Kept tiny on purpose: add fixtures below as needed.

Puts this folder on ``sys.path`` so test modules can ``import strategies`` whatever pytest's
import mode or rootdir.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Fixtures for the real services the integration tests talk to, for every test module.
from support.bot_api_server import bot_api  # noqa: E402, F401
from support.live_bot import bots  # noqa: E402, F401
from support.postgres import pg_schema, postgres_dsn, postgres_server  # noqa: E402, F401
from support.ray_cluster import ray_cluster  # noqa: E402, F401
from support.statsd_daemon import statsd_daemon  # noqa: E402, F401
