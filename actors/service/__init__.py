"""The service layer: the `tradewarden` command and the control API, on top of `actors`.

Layout, one job per module: `cli` (the console script), `config` (the TOML run config), `live`
(what `tradewarden run` starts and stops), `feed` (live price feeds for a paper broker), `hub`
(the event subscriber behind the heartbeat check and the event stream), `status` (what status
and health report), `auth` (the bearer token and its gate), `control` (the Starlette app),
`server` (uvicorn on its own thread), `client` (the HTTP client of the command line) and
`journal` (reading a state file read-only).

It talks to a running system only through `TradingSystem`, its addresses and the journal.
Nothing in `runtime` or in the trading actors imports it.
"""
