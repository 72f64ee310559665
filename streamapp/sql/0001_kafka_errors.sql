-- Messages the Kafka-engine tables could not parse (kafka_handle_error_mode='stream'):
-- kept with their raw bytes and position instead of being dropped or stalling the consumer.
CREATE TABLE IF NOT EXISTS kafka_errors
(
    exchange     LowCardinality(String),
    topic        LowCardinality(String),
    partition    UInt64,
    offset       UInt64,
    raw_message  String,          -- the undecodable Kafka value, as received
    error        String,          -- ClickHouse's parse error
    seen_at      DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
-- Operators look errors up by when they happened and where from.
ORDER BY (seen_at, topic, partition, offset)
TTL toDateTime(seen_at) + INTERVAL {hot_retention_days} DAY;
