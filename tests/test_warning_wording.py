"""A warning names the warning level it crossed, with the limit beside it, not the limit alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runtime.risk.guards import DailyLossGuard, Level, MaxDrawdownGuard, MinEquityGuard, TradingState, Verdict
from runtime.risk.monitor import RiskMonitor

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("guard", "equity", "verdict"),
    [
        (
            MaxDrawdownGuard(3.0, warn_at=0.5), 9846.0,
            Verdict("max_drawdown", Level.WARN,
                    "warning: max drawdown 1.54% >= warning 1.50% (limit 3.00%, peak 10000.00, equity 9846.00)",
                    "drawdown_block_total"),
        ),
        (
            MaxDrawdownGuard(3.0, trailing=False, warn_at=0.5), 9846.0,
            Verdict("max_drawdown", Level.WARN,
                    "warning: static drawdown 1.54% >= warning 1.50% "
                    "(limit 3.00%, start 10000.00, floor 9700.00, equity 9846.00)",
                    "drawdown_block_total"),
        ),
        (
            DailyLossGuard(3.0, warn_at=0.5), 9846.0,
            Verdict("daily_loss", Level.WARN,
                    "warning: daily loss 1.54% >= warning 1.50% (limit 3.00%, start of day 10000.00, equity 9846.00)",
                    "daily_loss_block_total"),
        ),
        (
            MaxDrawdownGuard(3.0, warn_at=0.5), 9600.0,
            Verdict("max_drawdown", Level.BREACH, "max drawdown 4.00% >= limit 3.00% (peak 10000.00, equity 9600.00)",
                    "drawdown_block_total"),
        ),
        (
            MinEquityGuard(5000.0, warn_at=0.5), 9846.0,
            Verdict("min_equity", Level.WARN, "warning: equity 9846.00 < warning level 10000.00 (minimum 5000.00)",
                    "min_equity_block_total"),
        ),
    ],
)
def test_a_verdict_names_the_level_it_crossed(guard, equity, verdict):
    assert guard.verdict(equity, 10_000.0, 10_000.0, 10_000.0) == verdict


def test_the_monitors_reducing_reason_is_the_warning_with_its_level():
    monitor = RiskMonitor(10_000.0, [MaxDrawdownGuard(3.0, warn_at=0.5)])
    assessment = monitor.observe(9_846.0, AT)
    assert assessment is not None and assessment.state is TradingState.REDUCING
    assert monitor.state().reason == (
        "warning: max drawdown 1.54% >= warning 1.50% (limit 3.00%, peak 10000.00, equity 9846.00)"
    )
