"""Bundled price data for the examples and tests.

Nothing is stored here yet: the demonstration series is computed, not read, by
`runtime.prices.synthetic_bars` (seeded, so it is the same every run). A data file added here must
also be listed under ``[options.package_data]`` in setup.cfg to be installed with the package.
"""
