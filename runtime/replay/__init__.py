"""Data-time tooling for replays: ``prices`` (bars, CSV and MT5 loaders, the synthetic series),
``strategies`` (the moving-average crossover) and ``report`` (summary, equity CSV, chart)."""
