"""`tradewarden run` with HEALTHCHECK_PING_URL pings a real local server, and the pings stop when
the process is killed: the outside monitor's cue that it died."""

from __future__ import annotations

import pytest
from support.live_bot import ROOT
from support.ping_server import CHECK, PingServer

LIVE_TOML = ROOT / "examples" / "live.toml"


def test_a_running_process_pings_and_a_killed_one_falls_silent(bots):
    with PingServer() as pings:
        bot = bots(LIVE_TOML, HEALTHCHECK_PING_URL=pings.url, HEARTBEAT_INTERVAL_SECONDS="0.5")
        arrived = pings.wait_for(3, timeout=30.0)
        assert {(p.method, p.path) for p in arrived} == {("GET", CHECK)}
        assert "healthcheck" in bot.get("/api/status").json()["children"]
        bot.process.kill()
        bot.process.wait(10)
        silent = len(pings.pings)
        # Four heartbeat intervals without a ping: what an outside monitor would alert on.
        with pytest.raises(AssertionError, match="timed out"):
            pings.wait_for(silent + 1, timeout=2.0)
