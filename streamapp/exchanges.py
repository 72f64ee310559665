"""The exchanges streamapp knows, by the name used in topics, tables and records (ccxt's ids).

One id is one market: Binance spot and Binance USDⓈ-M futures trade the same
symbols with unrelated trade-id sequences, so they are two exchanges.
"""

BINANCE = "binance"          # Binance spot
BINANCEUSDM = "binanceusdm"  # Binance USDⓈ-M futures
KRAKEN = "kraken"

EXCHANGES: tuple[str, ...] = (BINANCE, BINANCEUSDM, KRAKEN)

# Each exchange's public endpoints, the defaults of STREAMAPP_*_WS_URL / STREAMAPP_*_REST_URL
# (settings.py) and of the feed protocols (feeds/<exchange>.py).
WS_URLS: dict[str, str] = {
    BINANCE: "wss://stream.binance.com:9443/stream",
    BINANCEUSDM: "wss://fstream.binance.com/stream",
    KRAKEN: "wss://ws.kraken.com/v2",
}
REST_URLS: dict[str, str] = {
    BINANCE: "https://api.binance.com",
    BINANCEUSDM: "https://fapi.binance.com",
    KRAKEN: "https://api.kraken.com",
}
