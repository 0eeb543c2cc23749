"""Benchmarks for tradewarden's actors, each figure set against a baseline measured in the same run.

Run ``python -m benchmarks`` (or ``--quick`` for a short pass that only exercises the code).
Modules: `stats` (percentiles, RSS, the result table), `baselines` (raw pykka and queue.Queue),
`system` (a trading system to measure), `guard` (reaction, throughput, memory), `restart`,
`heartbeat`, `replay`; `__main__` runs them and prints the table.
"""
