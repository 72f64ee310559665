"""The exchanges streamapp knows, by the name used in topics, tables and records."""

BINANCE = "binance"
KRAKEN = "kraken"

EXCHANGES: tuple[str, ...] = (BINANCE, KRAKEN)
