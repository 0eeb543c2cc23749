"""I/O behind the core's ports, one module each: they may block, and start threads.

``paper`` (the embedded broker), ``system_clock`` (wall time), ``sqlite`` (state and journal),
``postgres`` (state and journal on a PostgreSQL server, with fencing, extra ``postgres``),
``state_claim`` (one running bot per SQLite state file),
``statsd`` (metrics), ``telegram`` (alerts), ``logs`` (loguru sinks, for applications only),
``mt5`` (MetaTrader 5, Windows only, extra ``mt5``) and ``mt5_mapping`` (its pure translation,
importable anywhere). Import a module by name; nothing here is loaded by ``import runtime``.
"""
