"""The fleet's dashboard in a real Chromium, driven by Selenium against the fleet's control server
on the session's Ray cluster (skipped without Chromium, as the single system's dashboard test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support.ray_cluster import FLEET_TOKEN, ServedFleet, fleet_fail
from test_dashboard_browser import chromium, text  # noqa: F401 (the fixture, and its skip without Chromium)


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
