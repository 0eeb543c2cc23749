"""A Hypothesis state machine over random signals, prices, outside fills and clock jumps: the gate
never lets out an order that an independent model says breaks a configured limit, and every
refusal names a rule the model says truly applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from strategies import SYMBOLS, limit_settings, orders, prices

from runtime import Order, PaperBroker, Settings, TradingState
from runtime.risk.gate import TRADING_STATE

START = datetime(2024, 3, 29, 22, 0, tzinfo=UTC)  # the weekend the clocks change in Europe
BAND = 1e-9  # relative: within this of a limit, the model accepts either answer


class Model:
    """What the limits mean, computed from the account and the model's own record of what was sent."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.sent: list[datetime] = []
        self.rate_refusals: list[datetime] = []
        self.latched = False

    def verdicts(self, order: Order, broker: PaperBroker, quotes: dict[str, float], now: datetime) -> tuple[set[str], set[str]]:
        """The rules ``order`` surely breaks, and those it may break (within rounding of the limit)."""
        c = self.config
        net = {p.symbol: p.side.sign * p.volume for p in broker.open_positions()}
        before = net.get(order.symbol, 0.0)
        after = before + order.side.sign * order.volume
        if before != 0 and abs(after) < abs(before) and after * before >= 0:
            return set(), set()  # it only reduces: every rule lets it through
        surely: set[str] = set()
        maybe: set[str] = set()

        def judge(name: str, value: float, limit: float | None) -> None:
            if limit is None:
                return
            if value > limit * (1 + BAND):
                surely.add(name)
            elif value > limit * (1 - BAND):
                maybe.add(name)

        held_after = {s: v for s, v in {**net, order.symbol: after}.items() if abs(v) > 1e-9 * max(abs(before), order.volume)}
        value = {s: abs(v) * quotes[s] for s, v in held_after.items()}
        total = sum(value.values())
        judge("max_order_volume", order.volume, c.max_order_volume)
        judge("max_order_notional", order.volume * quotes[order.symbol], c.max_order_notional)
        if c.max_open_positions is not None and len(held_after) > c.max_open_positions and len(held_after) > len(net):
            surely.add("max_open_positions")
        judge("max_symbol_exposure", value.get(order.symbol, 0.0), c.max_symbol_exposure)
        judge("max_total_exposure", total, c.max_total_exposure)
        equity = broker.account_equity()
        if c.max_leverage is not None and equity <= 0:
            surely.add("max_leverage")
        elif equity > 0:
            judge("max_leverage", total / equity, c.max_leverage)
        zone = ZoneInfo(c.trading_timezone)
        midnight = datetime.combine(now.astimezone(zone).date(), datetime.min.time(), zone)
        for name, window, limit in (
            ("max_orders_per_second", timedelta(seconds=1), c.max_orders_per_second),
            ("max_orders_per_day", timedelta(days=1), c.max_orders_per_day),
            ("max_trades_per_day", now - midnight, c.max_trades_per_day),
        ):
            # An order exactly one window old is on the boundary: the gate's float seconds may
            # count it either way.
            inside = sum(1 for t in self.sent if now - t < window) + 1
            edge = sum(1 for t in self.sent if now - t == window)
            if limit is not None and inside > limit:
                surely.add(name)
            elif limit is not None and inside + edge > limit:
                maybe.add(name)
        return surely, maybe


class GateMachine(RuleBasedStateMachine):
    @initialize(config=limit_settings(), start_prices=st.fixed_dictionaries({s: prices(0.5, 2_000.0) for s in SYMBOLS}))
    def start(self, config: Settings, start_prices: dict[str, float]) -> None:
        self.config, self.gate, self.model = config, config.gate(), Model(config)
        self.broker = PaperBroker(1_000_000.0)
        self.quotes = dict(start_prices)
        for symbol, price in start_prices.items():
            self.broker.update_price(symbol, price)
        self.now = START
        self.submitted = 0
        self.adding: list[datetime] = []  # the orders sent that were judged (a reducing one passes every rule)

    @rule(order=orders(max_volume=500.0))
    def signal(self, order: Order) -> None:
        surely, maybe = self.model.verdicts(order, self.broker, self.quotes, self.now)
        refusal = self.gate.check(
            order, TradingState.ACTIVE, self.broker.open_positions(), now=self.now,
            prices=self.quotes, equity=self.broker.account_equity(),
        )
        reduces = self._reduces(order)
        if self.model.latched and not reduces:
            assert refusal is not None and refusal.rule == TRADING_STATE
            return
        if refusal is None:
            assert not surely, f"{order} went out although it breaks {surely}"
            self.gate.sent(self.now)
            self.model.sent.append(self.now)
            if not reduces:
                self.adding.append(self.now)
            self.broker.submit_order(order)
            self.submitted += 1
            return
        assert refusal.rule in surely | maybe, f"{refusal} names a rule the model says does not apply ({surely})"
        if refusal.rule in {"max_orders_per_second", "max_orders_per_day", "max_trades_per_day"}:
            self._count_rate_refusal(refusal.runaway)

    def _reduces(self, order: Order) -> bool:
        net = self.broker.net_volume(order.symbol)
        return net != 0 and order.side.sign * net < 0 and order.volume <= abs(net) * (1 + 1e-12)

    def _count_rate_refusal(self, runaway: str | None) -> None:
        c, model = self.config, self.model
        if c.runaway_refusals is None:
            assert runaway is None
            return
        model.rate_refusals.append(self.now)
        window = timedelta(seconds=c.runaway_window_seconds)
        recent = sum(1 for t in model.rate_refusals if self.now - t < window)
        edge = sum(1 for t in model.rate_refusals if self.now - t == window)
        if recent < c.runaway_refusals <= recent + edge:  # on the boundary: either answer
            model.latched = self.gate.latched is not None
        elif recent >= c.runaway_refusals and not model.latched:
            model.latched = True
            assert runaway is not None and runaway.startswith("runaway order loop: ")
        else:
            assert runaway is None

    @rule(symbol=st.sampled_from(SYMBOLS), price=prices(0.5, 2_000.0))
    def price_moves(self, symbol: str, price: float) -> None:
        self.quotes[symbol] = price
        self.broker.update_price(symbol, price)

    @rule(order=orders(max_volume=50.0))
    def outside_fill(self, order: Order) -> None:
        # A trade made outside the guard (by hand, at the broker): the limits see it as held.
        self.broker.submit_order(order)

    @rule(seconds=st.sampled_from([0.0, 0.2, 0.7, 1.0, 30.0, 3_600.0, 86_399.0, 86_400.0]))
    def clock_jumps(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def operator_resumes(self) -> None:
        self.gate.release()
        self.model.latched = False
        self.model.rate_refusals.clear()

    @invariant()
    def never_more_sent_than_the_rates_allow(self) -> None:
        if getattr(self, "config", None) is not None and self.config.max_trades_per_day is not None:
            # Every judged order went out under the day's ceiling (the reducing ones count towards
            # it, but pass it), so no day holds more judged orders than it.
            per_day: dict[object, int] = {}
            zone = ZoneInfo(self.config.trading_timezone)
            for t in self.adding:
                per_day[t.astimezone(zone).date()] = per_day.get(t.astimezone(zone).date(), 0) + 1
            assert max(per_day.values(), default=0) <= self.config.max_trades_per_day


GateMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_the_gate_agrees_with_the_model = GateMachine.TestCase
