-- Replaying is harmless at any age. Silver forgets a trade after the hot retention
-- (TTL by ingest time) while Gold keeps its candles for the gold retention, so the
-- Bronze -> Silver views of 0004/0005, which look for a trade in Silver, let a replay
-- of anything older than Silver's retention into Gold a second time. They now look
-- in trade_identities: every trade Silver ever received, kept as long as any candle
-- that counts it.
--
-- Order, so that no delivered trade slips past while the views change:
--   1. the identity table;
--   2. the view that records every trade inserted into Silver from now on;
--   3. the backfill of the trades Silver already holds (a trade inserted between
--      2 and 3 is recorded twice; the ReplacingMergeTree folds that);
--   4. each Bronze -> Silver view switched in place (ALTER ... MODIFY QUERY: the
--      view never disappears, so no Bronze insert misses it);
--   5. a catch-up of Silver rows ingested in the last day: an insert into Silver
--      that was already running when 2 ran has no identity view in its chain, and
--      may have committed after 3 read Silver (this assumes 2-4 take less than a
--      day; 3 read a million Silver rows in seconds here).
-- Every statement may run again: re-running an insert only adds identities the
-- ReplacingMergeTree folds.
--
-- Exchanges: statements 4 are per exchange, literal and identical in shape. Every
-- exchange whose Bronze migration comes before this one needs its statement here;
-- a later exchange's migration creates its Bronze -> Silver view with this check.

-- One row per trade identity (exchange, symbol, trade id), with its trade time.
-- Kept by trade time for the gold retention: every candle counting a trade has a window
-- start at or before the trade's time, so it expires no later than the trade's identity.
-- On a cluster: ReplicatedReplacingMergeTree sharded like silver_trades, so each shard
-- checks the identities of the trades it receives.
CREATE TABLE IF NOT EXISTS trade_identities
(
    exchange    LowCardinality(String),
    symbol      LowCardinality(String),
    trade_id    String,
    trade_time  DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
-- Monthly parts: TTL drops whole parts (ttl_only_drop_parts), keeping an identity
-- up to a month longer than the retention, never shorter.
PARTITION BY toYYYYMM(trade_time)
-- The views look identities up by exchange and a block's trade-time range.
ORDER BY (exchange, trade_time, symbol, trade_id)
TTL toDateTime(trade_time) + INTERVAL {gold_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS trade_identities_mv TO trade_identities AS
SELECT exchange, symbol, trade_id, trade_time
FROM silver_trades;

INSERT INTO trade_identities (exchange, symbol, trade_id, trade_time)
SELECT exchange, symbol, trade_id, trade_time
FROM silver_trades;

-- binance: into Silver, each trade once, checked against every trade Silver has ever
-- received (not only what it still holds), within the block's time range.
ALTER TABLE silver_from_bronze_binance_mv MODIFY QUERY
SELECT
    exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side,
    trade_time, event_time, receive_time, ingest_time
FROM bronze_trades_binance
WHERE (symbol, trade_id) NOT IN (
    SELECT symbol, trade_id
    FROM trade_identities
    WHERE exchange = 'binance'
      AND trade_time >= (SELECT min(trade_time) FROM bronze_trades_binance)
      AND trade_time <= (SELECT max(trade_time) FROM bronze_trades_binance)
)
LIMIT 1 BY symbol, trade_id;

-- kraken: the same check.
ALTER TABLE silver_from_bronze_kraken_mv MODIFY QUERY
SELECT
    exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side,
    trade_time, event_time, receive_time, ingest_time
FROM bronze_trades_kraken
WHERE (symbol, trade_id) NOT IN (
    SELECT symbol, trade_id
    FROM trade_identities
    WHERE exchange = 'kraken'
      AND trade_time >= (SELECT min(trade_time) FROM bronze_trades_kraken)
      AND trade_time <= (SELECT max(trade_time) FROM bronze_trades_kraken)
)
LIMIT 1 BY symbol, trade_id;

-- binanceusdm: the same check.
ALTER TABLE silver_from_bronze_binanceusdm_mv MODIFY QUERY
SELECT
    exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side,
    trade_time, event_time, receive_time, ingest_time
FROM bronze_trades_binanceusdm
WHERE (symbol, trade_id) NOT IN (
    SELECT symbol, trade_id
    FROM trade_identities
    WHERE exchange = 'binanceusdm'
      AND trade_time >= (SELECT min(trade_time) FROM bronze_trades_binanceusdm)
      AND trade_time <= (SELECT max(trade_time) FROM bronze_trades_binanceusdm)
)
LIMIT 1 BY symbol, trade_id;

INSERT INTO trade_identities (exchange, symbol, trade_id, trade_time)
SELECT exchange, symbol, trade_id, trade_time
FROM silver_trades
WHERE ingest_time >= now64(6) - INTERVAL 1 DAY;
