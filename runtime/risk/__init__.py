"""The pure risk core: drawdown, one class per guard rule, the monitor that latches the trading
state, the order gate, and the liquidation routine. Computes only: no thread, socket or file."""
