"""The exchanges streamapp knows, by the name used in topics, tables and records (ccxt's ids).

One id is one market: Binance spot and Binance USDⓈ-M futures trade the same
symbols with unrelated trade-id sequences, so they are two exchanges.
"""

BINANCE = "binance"          # Binance spot
BINANCEUSDM = "binanceusdm"  # Binance USDⓈ-M futures
KRAKEN = "kraken"

EXCHANGES: tuple[str, ...] = (BINANCE, BINANCEUSDM, KRAKEN)
