-- Silver: one unified table of trades from every exchange, each trade once.
-- Created before the Bronze tables that feed it, so no delivered trade can miss it.
CREATE TABLE IF NOT EXISTS silver_trades
(
    exchange         LowCardinality(String),
    symbol           LowCardinality(String),   -- canonical BASE/QUOTE
    exchange_symbol  LowCardinality(String),
    trade_id         String,
    trade_seq        Nullable(Int64),          -- numeric sequence where the exchange has one
    price            Decimal(38, 18),
    quantity         Decimal(38, 18),
    side             LowCardinality(String),   -- taker side: buy or sell
    trade_time       DateTime64(6, 'UTC'),
    event_time       DateTime64(6, 'UTC'),
    receive_time     DateTime64(6, 'UTC'),
    ingest_time      DateTime64(6, 'UTC')      -- when it reached Bronze; the hot-tier TTL counts from here
)
-- Duplicates are dropped before they get here (see the Bronze -> Silver views);
-- ReplacingMergeTree on the trade's identity is the backstop for any that slip by.
ENGINE = ReplacingMergeTree
-- Per-day partitions of trade time: replays and offloads work on whole days.
PARTITION BY toYYYYMMDD(trade_time)
-- (exchange, symbol, trade time) serves candle and tail queries; trade_id completes the identity.
ORDER BY (exchange, symbol, trade_time, trade_id)
TTL toDateTime(ingest_time) + INTERVAL {hot_retention_days} DAY;
