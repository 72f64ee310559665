-- Bronze for kraken: every trade the Kafka engine delivers from
-- market.crypto.trades.kraken.normalized, as delivered, with its Kafka position.
-- Order: target table, the view into Silver, the Kafka-engine table, the view
-- that joins them (consumption starts with the last statement, when all exist).
CREATE TABLE IF NOT EXISTS bronze_trades_kraken
(
    exchange         LowCardinality(String),
    symbol           LowCardinality(String),
    exchange_symbol  LowCardinality(String),
    trade_id         String,
    trade_seq        Nullable(Int64),
    price            Decimal(38, 18),
    quantity         Decimal(38, 18),
    side             LowCardinality(String),
    trade_time       DateTime64(6, 'UTC'),
    event_time       DateTime64(6, 'UTC'),
    receive_time     DateTime64(6, 'UTC'),
    raw_partition    Int32,                    -- lineage: the raw-topic record the trade came from
    raw_offset       Int64,
    _topic           LowCardinality(String),   -- the normalized-topic record it arrived in
    _partition       UInt64,
    _offset          UInt64,
    _timestamp       Nullable(DateTime),
    ingest_time      DateTime64(6, 'UTC')      -- when ClickHouse read it
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(trade_time)
-- Redeliveries stay visible here (same trade, another _offset): Bronze is the audit trail.
ORDER BY (symbol, trade_time, trade_id)
TTL toDateTime(ingest_time) + INTERVAL {hot_retention_days} DAY;

-- Into Silver, each trade once: drop rows Silver already holds (a Kafka redelivery,
-- a replay) within the time range of this block, and repeats within the block.
-- Views fire per inserted block before any merge, so this is what keeps Gold exact.
CREATE MATERIALIZED VIEW IF NOT EXISTS silver_from_bronze_kraken_mv TO silver_trades AS
SELECT
    exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side,
    trade_time, event_time, receive_time, ingest_time
FROM bronze_trades_kraken
WHERE (symbol, trade_id) NOT IN (
    SELECT symbol, trade_id
    FROM silver_trades
    WHERE exchange = 'kraken'
      AND trade_time >= (SELECT min(trade_time) FROM bronze_trades_kraken)
      AND trade_time <= (SELECT max(trade_time) FROM bronze_trades_kraken)
)
LIMIT 1 BY symbol, trade_id;

CREATE TABLE IF NOT EXISTS kafka_trades_kraken
(
    exchange         String,
    symbol           String,
    exchange_symbol  String,
    trade_id         String,
    trade_seq        Nullable(Int64),
    price            Decimal(38, 18),
    quantity         Decimal(38, 18),
    side             String,
    trade_time       DateTime64(6, 'UTC'),
    event_time       DateTime64(6, 'UTC'),
    receive_time     DateTime64(6, 'UTC'),
    raw_partition    Int32,
    raw_offset       Int64
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = '{kafka_broker_list}',
    kafka_topic_list = 'market.crypto.trades.kraken.normalized',
    kafka_group_name = 'clickhouse-kraken',
    kafka_format = 'AvroConfluent',
    format_avro_schema_registry_url = '{schema_registry_url}',
    kafka_handle_error_mode = 'stream',       -- bad messages go to kafka_errors, not lost, no stall
    kafka_flush_interval_ms = 100,            -- default 7,500 ms: this bounds freshness
    kafka_poll_timeout_ms = 20,
    kafka_consumer_reschedule_ms = 10,        -- default 500: an idle poll would otherwise pause reading that long
    kafka_thread_per_consumer = 1,
    kafka_num_consumers = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS kafka_errors_kraken_mv TO kafka_errors AS
SELECT 'kraken' AS exchange, _topic AS topic, _partition AS partition, _offset AS offset,
       _raw_message AS raw_message, _error AS error, now64(6) AS seen_at
FROM kafka_trades_kraken
WHERE length(_error) > 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS bronze_trades_kraken_mv TO bronze_trades_kraken AS
SELECT
    exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side,
    trade_time, event_time, receive_time, raw_partition, raw_offset,
    _topic, _partition, _offset, _timestamp, now64(6) AS ingest_time
FROM kafka_trades_kraken
WHERE length(_error) = 0;
