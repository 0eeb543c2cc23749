"""The fleet's dashboard in a real Chromium, driven by Selenium against the fleet's control server
on the session's Ray cluster (skipped without Chromium, as the single system's dashboard test):
the session's served fleet, and a fleet of the test's own whose halt does not hold everywhere."""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support.fleet_parts import gated_broker, refusing_broker
from support.ray_cluster import FLEET_TOKEN, RayCluster, ServedFleet, fleet_fail
from test_dashboard_browser import chromium, text  # noqa: F401 (the fixture, and its skip without Chromium)

from actors.fleet import Probing
from runtime.adapters.paper import PaperBroker
from runtime.settings import Settings
from runtime.signals import ListSignalSource


def test_the_dashboard_of_a_fleet_lists_every_account_halts_and_resumes_one_and_halts_all_by_its_buttons(
        served_fleet: ServedFleet, chromium: webdriver.Chrome) -> None:  # noqa: F811 (the imported fixture)
    alpha, beta = served_fleet.accounts
    fleet = served_fleet.fleet

    def wait(what: str, check: Callable[[webdriver.Chrome], Any], timeout: float = 30.0) -> Any:
        try:
            return WebDriverWait(chromium, timeout, poll_frequency=0.1).until(check)
        except TimeoutException:
            page = chromium.find_element(By.TAG_NAME, "body").text
            fleet_fail(lambda: [s.pid for s in fleet.accounts(timeout=10.0)],
                       f"no {what} within {timeout}s; the page shows:\n{page}")

    # The table is redrawn on every poll: each read and click is one script, never a stale element.
    def row(account: str) -> list[str]:
        return list(chromium.execute_script(
            "const r = document.querySelector(`#fleet-accounts tr[data-account='${arguments[0]}']`);"
            "return r ? [...r.cells].map((c) => c.innerText) : [];", account))

    def press(account: str, action: str) -> None:
        chromium.execute_script(
            "document.querySelector(`#fleet-accounts tr[data-account='${arguments[0]}'] "
            "button[data-action='${arguments[1]}']`).click();", account, action)

    def state_of(account: str, state: str) -> Callable[[webdriver.Chrome], bool]:
        return lambda d: row(account)[2:3] == [state]

    chromium.get(served_fleet.url + "/")
    chromium.find_element(By.ID, "token").send_keys(FLEET_TOKEN)
    chromium.find_element(By.ID, "connect").click()
    wait("the fleet view", lambda d: d.find_element(By.ID, "fleet").is_displayed() and len(row(beta)) == 11)
    assert not chromium.find_element(By.ID, "dashboard").is_displayed()
    assert text(chromium, "loop-id") == f"fleet {fleet.namespace}"
    here = fleet.status(beta, timeout=10.0)
    assert row(beta)[:10] == [beta, "ok", "ACTIVE", "10,000.00", "10,000.00", "0.00%", here.node[:8], str(here.pid),
                              "–", ""]
    assert chromium.execute_script(
        "return [...document.querySelectorAll(`#fleet-accounts tr[data-account='${arguments[0]}'] button`)]"
        ".map((b) => [b.innerText, b.dataset.action]);", beta) == [["Halt", "halt"], ["Resume", "resume"]]
    assert chromium.execute_script(
        "return [...document.querySelectorAll('#fleet-accounts tr')].map((r) => r.dataset.account);") == [
        alpha, beta, served_fleet.below_minimum]
    assert text(chromium, "fleet-counters") == "re-created by the controller: none; zombies killed: none"

    chromium.find_element(By.ID, "fleet-reason").send_keys("desk closed")
    press(beta, "halt")
    wait(f"{beta} HALTED", state_of(beta, "HALTED"))
    assert text(chromium, "fleet-message") == f"Halted {beta} (was active)"
    assert row(beta)[9] == "halted by dashboard: desk closed"
    assert fleet.status(beta, timeout=10.0).trading_state.value == "halted"
    assert row(alpha)[2] == "ACTIVE"  # only the account whose button was pressed

    press(beta, "resume")
    wait(f"{beta} ACTIVE again", state_of(beta, "ACTIVE"))
    assert text(chromium, "fleet-message") == f"{beta}: resumed (was halted)"

    # The fleet's kill switch: every account halted by one button, with the reason above.
    chromium.find_element(By.ID, "fleet-reason").clear()
    chromium.find_element(By.ID, "fleet-reason").send_keys("market gone wrong")
    chromium.find_element(By.ID, "fleet-halt-all").click()
    wait("every account HALTED", lambda d: all(row(a)[2:3] == ["HALTED"] for a in (alpha, beta)))
    assert text(chromium, "fleet-message") == "Halted every account (3)"
    assert [row(a)[9] for a in (alpha, beta)] == ["halted by dashboard: market gone wrong"] * 2
    for account in (alpha, beta):  # as the other tests on this fleet expect them
        fleet.resume(account, "test", timeout=10.0)

    chromium.set_window_size(390, 844)
    assert chromium.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_the_fleet_halt_button_shows_each_accounts_outcome_halted_pending_or_failed_and_why(
        ray_cluster: RayCluster, chromium: webdriver.Chrome, tmp_path: Path) -> None:  # noqa: F811 (the imported fixture)
    # It said "Halted every account" when some were only pending, and on a 503 showed the summary alone.
    from actors.fleet import Fleet
    from actors.service.auth import BearerToken
    from actors.service.fleet_api import fleet_app
    from actors.service.server import ControlServer, bind

    run = uuid.uuid4().hex[:6]
    fleet = Fleet.connect(ray_cluster.address, namespace=f"dash-{run}", probing=Probing(interval=3600.0))
    server = ControlServer(fleet_app(fleet, BearerToken(FLEET_TOKEN)), bind("127.0.0.1", 0, token=FLEET_TOKEN)).start()
    host, port = server.address
    trading, starting, in_memory = (f"{n}-{run}" for n in ("a-trading", "b-starting", "c-memory"))
    base = Settings(loop_interval_seconds=2.0, heartbeat_interval_seconds=10.0)

    def pids() -> list[int | None]:
        return [s.pid for s in fleet.accounts(timeout=10.0)]

    def outcomes(d: webdriver.Chrome) -> list[str]:
        return [li.text for li in d.find_elements(By.CSS_SELECTOR, "#fleet-outcomes li")]

    def wait(what: str, check: Callable[[webdriver.Chrome], Any], timeout: float = 60.0) -> Any:
        try:
            return WebDriverWait(chromium, timeout, poll_frequency=0.1).until(check)
        except TimeoutException:
            fleet_fail(pids, f"no {what} within {timeout}s; the page shows:\n{text(chromium, 'fleet')}")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(100.0)
        try:
            for account, settings, broker in (
                (trading, attrs.evolve(base, state_db=str(tmp_path / "a.db")), functools.partial(PaperBroker, 10_000)),
                (starting, attrs.evolve(base, state_db=str(tmp_path / "b.db")),
                 functools.partial(gated_broker, listener.getsockname()[1])),
                (in_memory, base, refusing_broker),
            ):
                fleet.add(account, settings, broker, ListSignalSource, node=ray_cluster.head.node_id, ready_timeout=None)
            gate, _ = listener.accept()  # its worker is building the broker: the account is starting
            with gate:
                late = fleet.wait_ready([trading, in_memory], 100.0)
                if late:
                    fleet_fail(pids, f"accounts {late} did not start within 100s")
                chromium.get(f"http://{host}:{port}/")
                chromium.find_element(By.ID, "token").send_keys(FLEET_TOKEN)
                chromium.find_element(By.ID, "connect").click()
                wait("the fleet view", lambda d: d.find_element(By.ID, "fleet").is_displayed())
                chromium.find_element(By.ID, "fleet-reason").send_keys("market gone wrong")
                chromium.find_element(By.ID, "fleet-halt-all").click()
                wait("the halt's outcomes", lambda d: len(outcomes(d)) == 3)
                pending = (f"{starting}: halt pending: account {starting} is starting (building its broker and signal"
                           " source): it will start HALTED (saved in its state store: whichever incarnation starts it"
                           " takes it first)")
                refused = "start failed: RuntimeError('broker login refused')"
                assert text(chromium, "fleet-message") == (
                    f"the halt does not hold for 1 of 3 accounts: {in_memory} (not_saved); each one's error says why:"
                    " halt them again")
                assert outcomes(chromium) == [
                    f"{trading}: halted (was active)",
                    pending,
                    f"{in_memory}: not saved: account {in_memory} is quarantined ({refused}): it does not trade, but"
                    " the halt was not saved (it keeps its state in this process's memory: give it a state_db or a"
                    " state_dsn): added again, or started by another process, the account would start without it;"
                    " halt it again once its state store can be reached"]

                # Every halt holds, one only pending: said so, not "Halted every account".
                fleet.remove(in_memory, timeout=30.0)
                chromium.find_element(By.ID, "fleet-halt-all").click()
                wait("the second halt's outcomes", lambda d: len(outcomes(d)) == 2)
                assert text(chromium, "fleet-message") == (
                    "The halt holds for every account (2): 1 halted, 1 pending (starting: it starts HALTED)")
                assert outcomes(chromium) == [f"{trading}: halted (was halted)", pending]
                gate.sendall(b"g")
        finally:
            server.stop()
            fleet.dissolve(timeout=10.0)
