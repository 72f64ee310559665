"""Exchange simulator: replays capture files over WebSocket speaking Binance's and Kraken v2's
subscription protocols, serves their REST trade-history endpoints from the same captures, and
injects faults on demand."""
