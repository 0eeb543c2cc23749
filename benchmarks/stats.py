"""Small measuring helpers: nearest-rank percentiles, resident memory, and the result table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

__all__ = ["percentile", "rss_bytes", "Row", "format_table"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``samples``."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def rss_bytes() -> int:
    """This process's resident set size (VmRSS from /proc/self/status), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@attrs.frozen
class Row:
    """One line of the table: a figure, its baseline from the same run, and the target if any.

    ``met`` is None for a figure without a target; ``baseline_unit`` defaults to ``unit``.
    """

    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None
    target: str = ""
    met: bool | None = None
    baseline_unit: str | None = None

    @property
    def ratio(self) -> float | None:
        """figure / baseline, or None when there is no baseline value (or it is zero)."""
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: figure, value, baseline, baseline value, ratio, target, verdict."""
    header = ("figure", "value", "baseline (same run)", "baseline value", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        ratio = row.ratio
        verdict = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            (
                row.figure,
                _number(row.value, row.unit),
                row.baseline,
                _number(row.baseline_value, row.unit if row.baseline_unit is None else row.baseline_unit),
                "-" if ratio is None else f"{ratio:.3g}x",
                row.target,
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(out)
