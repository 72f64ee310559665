"""Feed handlers: exchange WebSocket trades published byte for byte to the raw topics.

Transport (connect, ping, backoff, reconnect, produce) lives in :mod:`.transport`
and :mod:`.producer`; what is exchange-specific (subscriptions, frame kinds, keys,
trade ids) lives in one module per exchange, :mod:`.binance`, :mod:`.binanceusdm` (spot's
protocol on futures hosts) and :mod:`.kraken`.
"""
