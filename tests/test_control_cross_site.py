"""A web page on another site cannot use the control API, even the default one (loopback, no
token): a halt it tries to lift stays, whether it posts a form or text, names another origin, or
reaches 127.0.0.1 under its own name (DNS rebinding). The command line, scripts and the server's
own dashboard still can."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from actor_helpers import WAIT
from support.control_server import TOKEN, served

from actors import TradingSystem
from actors.messages import EquityReading
from actors.service.client import Answer, ControlClient
from actors.service.cross_site import host_refusal, origin_refusal
from actors.service.hub import EventHub
from runtime import ListSignalSource, PaperBroker, Settings, TradingState
from runtime.adapters.sqlite import SqliteStore

RESUME = b'{"rebaseline": true, "by": "evil.example"}'


def test_a_page_on_another_site_cannot_lift_a_halt_through_the_default_api(tmp_path):
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    with served(system, hub, db, token=None) as api, httpx.Client(base_url=api.url, timeout=WAIT) as client:
        system.guard.tell(EquityReading(7_000.0, datetime.now(UTC), 0))  # a 30% drawdown: HALTED
        halted = system.guard_status().state
        assert halted.trading_state is TradingState.HALTED
        own = api.url  # http://127.0.0.1:<port>
        port = api.address[1]

        def refused(headers: dict[str, str], content: bytes = RESUME) -> tuple[int, dict[str, str]]:
            answer = client.post("/api/resume", content=content, headers=headers)
            return answer.status_code, answer.json()

        # What a page's fetch(..., {mode: "no-cors", body: text}) sends: no preflight, so the
        # server is the only one who can say no.
        assert refused({"origin": "https://evil.example", "content-type": "text/plain;charset=UTF-8"}) == (403, {
            "error": f"the Origin header 'https://evil.example' is not this server's own origin ({own}): "
                     "a page on another site may not call it"})
        assert refused({"origin": "null", "content-type": "application/json"})[0] == 403  # a sandboxed frame
        # A page whose own name resolves to 127.0.0.1 is same-origin to the browser: its Host names it.
        assert refused({"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}",
                        "content-type": "application/json"}) == (403, {
            "error": f"the Host header 'evil.example:{port}' is not this server's name: on the loopback address "
                     "127.0.0.1 it answers only to localhost, 127.0.0.1, [::1] (with a port); a web page reaching it "
                     "by another name (DNS rebinding) is refused"})
        # Without any Origin (a form a browser would label, a script): the body must say it is JSON.
        assert refused({"content-type": "text/plain"}) == (
            415, {"error": "the Content-Type header must be application/json, got 'text/plain'"})
        assert refused({"content-type": "application/x-www-form-urlencoded"}, b"rebaseline=true") == (
            415, {"error": "the Content-Type header must be application/json, got 'application/x-www-form-urlencoded'"})
        assert refused({}, b"") == (415, {"error": "the Content-Type header must be application/json, got none"})
        # Reading is refused to another site's page as well (its events, its positions).
        status = client.get("/api/status", headers={"host": f"evil.example:{port}"})
        assert status.status_code == 403
        assert system.guard_status().state == halted
        assert api.metrics.counters["control_auth_failures_total"] == 4

        # The trader's own: the server's dashboard (its own origin, reached through a tunnel too)
        # and the command line (no Origin), with a JSON body.
        assert client.get("/api/status", headers={"origin": own}).json()["trading_state"] == "halted"
        tunnel = {"host": "localhost:9000", "origin": "http://localhost:9000"}  # ssh -L 9000:127.0.0.1:<port>
        assert client.get("/api/status", headers=tunnel).status_code == 200
        resumed = client.post("/api/resume", json={"rebaseline": True, "by": "desk"},
                              headers={"content-type": "application/json; charset=utf-8"})
        assert (resumed.status_code, resumed.json()["done"]) == (200, "resumed")
        assert system.guard_status().state.trading_state is TradingState.ACTIVE


def test_the_command_line_client_sends_a_post_without_a_body_as_json(tmp_path):
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    with served(system, hub, db) as api:
        answer = ControlClient(api.url, TOKEN, timeout=WAIT).call("POST", "/api/resume")
    assert answer == Answer(200, {"done": "already_active", "previous_state": "active", "by": "control API",
                                  "rebaseline": False, "message": "already active: nothing to resume"})


@pytest.mark.parametrize(("host", "bound", "refused"), [
    ("127.0.0.1:8787", "127.0.0.1", False),
    ("localhost:8787", "127.0.0.1", False),
    ("LOCALHOST", "127.0.0.1", False),
    ("[::1]:8787", "::1", False),
    ("127.0.0.2:8787", "127.0.0.2", False),  # the address it is bound to
    ("127.0.0.2:8787", "127.0.0.1", True),
    ("evil.example:8787", "127.0.0.1", True),
    ("localhost.evil.example", "127.0.0.1", True),
    ("localhost@evil.example", "127.0.0.1", True),
    ("localhost:http", "127.0.0.1", True),
    ("localhost/evil", "127.0.0.1", True),
    ("", "127.0.0.1", True),
    (None, "127.0.0.1", False),  # no Host at all: no browser sends that
    ("trading.example.com", "10.0.0.5", False),  # exposed (with a token): any name it is reached by
    ("trading.example.com", "0.0.0.0", False),
])
def test_a_loopback_server_answers_only_to_its_own_names(host, bound, refused):
    assert (host_refusal(host, bound) is not None) is refused


@pytest.mark.parametrize(("origin", "host", "refused"), [
    (None, "127.0.0.1:8787", False),
    ("http://127.0.0.1:8787", "127.0.0.1:8787", False),
    ("http://LOCALHOST:8787", "localhost:8787", False),
    ("http://[::1]:8787", "[::1]:8787", False),
    ("http://trading.example.com", "trading.example.com:80", False),  # a default port said or not
    ("https://trading.example.com", "trading.example.com", False),  # behind a TLS proxy that keeps the Host
    ("http://localhost:8788", "localhost:8787", True),
    ("http://127.0.0.1:8787", "localhost:8787", True),
    ("https://evil.example", "127.0.0.1:8787", True),
    ("http://127.0.0.1:8787/path", "127.0.0.1:8787", True),
    ("ftp://127.0.0.1:8787", "127.0.0.1:8787", True),
    ("null", "127.0.0.1:8787", True),
    ("http://[::1", "[::1]:8787", True),
    ("http://127.0.0.1:99999", "127.0.0.1:99999", True),
    ("http://user@127.0.0.1:8787", "127.0.0.1:8787", True),
    ("http://127.0.0.1:8787", None, True),
])
def test_only_the_servers_own_origin_may_call_it(origin, host, refused):
    assert (origin_refusal(origin, host) is not None) is refused
