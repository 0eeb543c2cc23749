"""Adapters to real brokers, one module each, imported by name because each needs its broker's package.

``runtime.brokers.mt5`` drives a MetaTrader 5 terminal (Windows only, extra ``mt5``); its pure
translation to and from the runtime's values is ``runtime.brokers.mt5_mapping``, importable
anywhere. Without a real broker, use ``runtime.PaperBroker``.
"""
