"""The dashboard in a real Chromium, driven by Selenium against a real `tradewarden run` child."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from actor_helpers import WAIT
from support.control_server import TOKEN as CONTROL_TOKEN
from support.control_server import SlowListBroker, paper_with_positions, served
from support.live_bot import ROOT, TOKEN, Bot

from actors import TradingSystem
from actors.messages import Halt
from actors.service.hub import EventHub
from runtime import ListSignalSource, Order, PaperBroker, Settings
from runtime.adapters.sqlite import SqliteStore

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)) and not os.environ.get("CI"):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver); "
                "CI (the CI variable set) runs it", allow_module_level=True)

from PIL import Image  # noqa: E402 (after the skip: matplotlib's Pillow)
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# A paper bot whose price falls steadily: flat equity until the test cues a big buy, then a
# drawdown past 5% within a second or so.
FALLING = """
[tradewarden]
loop_id = "browser"
state_db = "{db}"
max_drawdown_percent = 5.0
min_equity = 500.0
daily_loss_percent = 20.0
guard_warn_fraction = 0.5
loop_interval_seconds = 0.2
heartbeat_interval_seconds = 1.0

[broker]
kind = "paper"
cash = 10000.0

[feed]
kind = "synthetic"
seed = 5
interval_seconds = 0.1
volatility = 0.0002
drift = -0.002

[strategy]
class = "support.on_cue:BuyOnCue"

[strategy.options]
cue = "{cue}"
volume = 500.0
"""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def waiter(driver: webdriver.Chrome, bot: Bot) -> Callable[..., Any]:
    """Wait for ``check(driver)`` to be truthy; on a timeout the child dumps its threads and the
    test fails with the page's text."""

    def wait(what: str, check: Callable[[webdriver.Chrome], Any], timeout: float = 20.0) -> Any:
        try:
            return WebDriverWait(driver, timeout, poll_frequency=0.05).until(check)
        except TimeoutException:
            page = driver.find_element(By.TAG_NAME, "body").text
            bot.fail(f"{what} did not happen within {timeout}s; the page shows:\n{page}")

    return wait


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def badge_is(state: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda driver: text(driver, "state-badge") == state


def test_the_dashboard_shows_the_curve_and_state_follows_a_breach_and_halts_and_resumes_by_its_buttons(
        bots, chromium, tmp_path):
    cue = tmp_path / "buy-now"
    config = tmp_path / "falling.toml"
    config.write_text(FALLING.format(db=tmp_path / "state.db", cue=cue))
    # The checkout's own code first, then the tests' strategies (not whatever tradewarden is installed).
    bot = bots(config, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    wait = waiter(chromium, bot)
    click = lambda element_id: chromium.find_element(By.ID, element_id).click()  # noqa: E731

    chromium.get(bot.url + "/")
    chromium.find_element(By.ID, "token").send_keys("not-the-token")
    click("connect")
    wait("the refusal", lambda d: text(d, "login-error"))
    assert text(chromium, "login-error") == "Refused: wrong bearer token"
    assert not chromium.find_element(By.ID, "dashboard").is_displayed()
    status = bot.get("/api/status").json()
    assert status["trading_state"] == "active"
    assert bot.get("/api/events?type=trading_state_changed").json()["events"] == []

    token = chromium.find_element(By.ID, "token")
    token.clear()
    token.send_keys(TOKEN)
    click("connect")
    wait("the dashboard", lambda d: d.find_element(By.ID, "dashboard").is_displayed())
    assert text(chromium, "state-badge") == "ACTIVE"
    wait("the equity curve", lambda d: int(d.find_element(By.ID, "equity-chart").get_attribute("data-points") or 0) >= 3)
    wait("the live stream", lambda d: text(d, "stream-state") == "live")
    assert [row.text.split()[0] for row in chromium.find_elements(By.CSS_SELECTOR, "#limits tr")] == [
        "max_drawdown", "min_equity", "daily_loss"]
    wait("the first heartbeat", lambda d: text(d, "heartbeat").startswith("#"))

    cue.touch()
    wait("the badge turning HALTED", badge_is("HALTED"), timeout=30)
    seen = time.time()
    [breach] = bot.get("/api/events?type=guard_triggered").json()["events"]
    assert seen - datetime.fromisoformat(breach["timestamp"]).timestamp() < 2.0
    assert re.match(r"^max drawdown \d+\.\d\d% >= limit 5\.00% ", text(chromium, "state-reason"))
    assert text(chromium, "state-since").startswith("since ")

    click("resume-button")
    wait("the refusal", lambda d: text(d, "resume-error"))
    assert re.match(r"^resume refused: max drawdown \d+\.\d\d% >= limit 5\.00%", text(chromium, "resume-error"))
    assert text(chromium, "state-badge") == "HALTED"
    click("rebaseline-button")
    wait("the rebaseline confirmation", lambda d: d.find_element(By.ID, "rebaseline-confirm").is_displayed())
    peak = bot.get("/api/status").json()["peak_equity"]
    assert re.match(rf"^Rebaseline: the peak goes from {peak:,.2f} to [\d,]+\.\d\d \(today's equity\)",
                    text(chromium, "rebaseline-text"))
    click("rebaseline-yes")
    wait("the badge turning ACTIVE after the rebaseline", badge_is("ACTIVE"))
    assert text(chromium, "action-message") == "Resumed with a new baseline (was halted)"

    chromium.find_element(By.ID, "halt-reason").send_keys("lunch")
    click("halt-button")
    wait("the badge turning HALTED by the button", badge_is("HALTED"))
    wait("the halt's reason", lambda d: "lunch" in text(d, "state-reason"))
    click("resume-button")
    wait("the badge turning ACTIVE by the button", badge_is("ACTIVE"))
    wait("the resume's answer", lambda d: text(d, "action-message") == "Resumed (was halted)")
    click("resume-button")  # once more, on an ACTIVE account
    wait("the answer that nothing was halted", lambda d: text(d, "action-message") == "Already active: nothing to resume")
    journal = bot.get("/api/events?type=rebaselined").json()["events"]
    assert [event["metadata"]["by"] for event in journal] == ["dashboard"]
    wait("the markers", lambda d: d.execute_script(
        "return app.markers.filter((m) => m.kind === 'trigger').length") >= 1)

    shot = tmp_path / "dashboard.png"
    chromium.save_screenshot(str(shot))
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, f"the screenshot {shot} looks blank"

    chromium.set_window_size(390, 844)
    assert chromium.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")



def test_the_dashboard_marks_a_stale_state_and_stale_or_unknown_positions(chromium, tmp_path):
    # An in-process system whose broker the test holds: a guard busy closing, then a broker that
    # hangs listing positions for the status.
    db, hub = str(tmp_path / "state.db"), EventHub()
    broker = SlowListBroker(paper_with_positions(1))
    system = TradingSystem(Settings(loop_id="stale"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)

    def shown(driver: webdriver.Chrome) -> dict[str, Any]:
        # What the page shows of the state and the positions, read at one moment.
        return dict(driver.execute_script("""
            const marker = (id) => document.getElementById(id).hidden ? null : document.getElementById(id).textContent;
            const badge = document.getElementById("state-badge");
            return {badge: badge.textContent, badge_class: badge.className, state_stale: marker("state-stale"),
                    positions: [...document.querySelectorAll("#positions tr")].map((r) => r.innerText.split("\\t")),
                    positions_stale: marker("positions-stale")};"""))

    def showing(expected: dict[str, Any]) -> None:
        # Wait until the page shows ``expected``, ages in a stale marker read as "N.Ns ago".
        def now(driver: webdriver.Chrome) -> dict[str, Any]:
            return {key: re.sub(r"\d+\.\ds ago", "N.Ns ago", value) if isinstance(value, str) else value
                    for key, value in shown(driver).items()}

        try:
            WebDriverWait(chromium, 20, poll_frequency=0.05).until(lambda driver: now(driver) == expected)
        except TimeoutException:
            pytest.fail(f"the page shows {now(chromium)}, not {expected}")

    held = [["S0", "buy", "10", "100", "0.00"]]
    try:
        with served(system, hub, db, status_timeout=1.0) as api:
            chromium.get(api.url + "/")
            chromium.find_element(By.ID, "token").send_keys(CONTROL_TOKEN)
            chromium.find_element(By.ID, "connect").click()
            showing({"badge": "ACTIVE", "badge_class": "badge active", "state_stale": None,
                                "positions": held, "positions_stale": None})

            system.guard.tell(Halt("ops", "drill"))
            assert broker.closing.wait(WAIT)  # the guard is busy closing: its last answer is shown, marked
            showing({
                "badge": "ACTIVE", "badge_class": "badge active stale",
                "state_stale": "stale: the guard did not answer within 1s; shown as of N.Ns ago",
                "positions": held,
                "positions_stale": "stale: read after the guard's answer, and the guard did not answer within 1s;"
                                   " shown as of N.Ns ago",
            })

            broker.slow.set()
            broker.release.set()  # the guard answers HALTED, flat; the list after it hangs
            showing({
                "badge": "HALTED", "badge_class": "badge halted", "state_stale": None, "positions": [["unknown"]],
                "positions_stale": "stale: the broker did not answer within 1s; its last list was read before the"
                                   " guard's answer shown; not shown",
            })

            broker.unblock.set()
            showing({"badge": "HALTED", "badge_class": "badge halted", "state_stale": None,
                                "positions": [["none"]], "positions_stale": None})
    finally:
        broker.release.set()  # a failed assertion must not leave the guard or a status thread waiting
        broker.unblock.set()


def test_the_dashboard_shows_an_entry_price_with_every_digit_of_its_quote_and_no_float_noise(chromium, tmp_path):
    # The entry price was shown as money, to two decimals: 1.08505 read 1.09, and the pips were gone.
    db, hub = str(tmp_path / "state.db"), EventHub()
    broker = PaperBroker(1_000_000)
    for symbol, prices in (("EURUSD", (1.08505,)), ("GBPUSD", (1.1, 1.3)), ("BTCUSD", (123_456.7,))):
        for quote in prices:  # two buys of GBPUSD average to 1.2000000000000002 in floats
            broker.update_price(symbol, quote)
            broker.submit_order(Order(symbol, "buy", 1))
    system = TradingSystem(Settings(loop_id="prices"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    rows = "return [...document.querySelectorAll('#positions tr')].map((r) => r.innerText.split('\\t').slice(0, 4));"
    with served(system, hub, db) as api:
        chromium.get(api.url + "/")
        chromium.find_element(By.ID, "token").send_keys(CONTROL_TOKEN)
        chromium.find_element(By.ID, "connect").click()
        try:
            WebDriverWait(chromium, 20, poll_frequency=0.05).until(lambda d: len(d.execute_script(rows)) == 3)
        except TimeoutException:
            pytest.fail(f"the page shows {chromium.execute_script(rows)}, not three positions")
        assert chromium.execute_script(rows) == [
            ["EURUSD", "buy", "1", "1.08505"], ["GBPUSD", "buy", "2", "1.2"], ["BTCUSD", "buy", "1", "123,456.7"]]
