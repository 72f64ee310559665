-- Gold: OHLCV candles per exchange, symbol and UTC window of trade time, for
-- 1m, 5m, 15m, 30m, 1h and 1d. Each interval has
--   gold_ohlcv_<i>        AggregatingMergeTree of partial states (merged in the background),
--   gold_ohlcv_<i>_mv     the view that turns each block inserted into silver_trades into states,
--   gold_ohlcv_<i>_final  a plain view that finalizes the states into OHLCV rows.
-- Every interval reads Silver directly, so each is exact on its own; Silver only
-- ever receives a trade once, so no candle counts a trade twice. A late trade
-- simply adds a state to its (old) window.
-- open/close: first/last trade by (trade time, trade sequence, trade id), never arrival order.
-- quote_volume is Decimal(76, 36): price * quantity of two Decimal(38, 18) needs scale 36.

CREATE TABLE IF NOT EXISTS gold_ohlcv_1m
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_1m_mv TO gold_ohlcv_1m AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 1 MINUTE) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_1m_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_1m
GROUP BY exchange, symbol, window_start;

CREATE TABLE IF NOT EXISTS gold_ohlcv_5m
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_5m_mv TO gold_ohlcv_5m AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 5 MINUTE) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_5m_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_5m
GROUP BY exchange, symbol, window_start;

CREATE TABLE IF NOT EXISTS gold_ohlcv_15m
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_15m_mv TO gold_ohlcv_15m AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 15 MINUTE) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_15m_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_15m
GROUP BY exchange, symbol, window_start;

CREATE TABLE IF NOT EXISTS gold_ohlcv_30m
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_30m_mv TO gold_ohlcv_30m AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 30 MINUTE) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_30m_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_30m
GROUP BY exchange, symbol, window_start;

CREATE TABLE IF NOT EXISTS gold_ohlcv_1h
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_1h_mv TO gold_ohlcv_1h AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 1 HOUR) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_1h_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_1h
GROUP BY exchange, symbol, window_start;

CREATE TABLE IF NOT EXISTS gold_ohlcv_1d
(
    exchange                LowCardinality(String),
    symbol                  LowCardinality(String),
    window_start            DateTime('UTC'),
    open                    AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    high                    SimpleAggregateFunction(max, Decimal(38, 18)),
    low                     SimpleAggregateFunction(min, Decimal(38, 18)),
    close                   AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), Int64, String)),
    volume                  SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume            SimpleAggregateFunction(sum, Decimal(76, 36)),
    trade_count             SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume        SimpleAggregateFunction(sum, Decimal(38, 18)),
    taker_buy_quote_volume  SimpleAggregateFunction(sum, Decimal(76, 36)),
    first_trade_time        SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_trade_time         SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
-- One row per candle after merges; queries filter by exchange and symbol, then time.
ORDER BY (exchange, symbol, window_start)
TTL window_start + INTERVAL {gold_retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_1d_mv TO gold_ohlcv_1d AS
SELECT
    exchange,
    symbol,
    toStartOfInterval(toDateTime(trade_time, 'UTC'), INTERVAL 1 DAY) AS window_start,
    argMinState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (trade_time, ifNull(trade_seq, 0), trade_id)) AS close,
    sum(quantity) AS volume,
    sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)) AS quote_volume,
    toUInt64(count()) AS trade_count,
    sumIf(quantity, side = 'buy') AS taker_buy_volume,
    sumIf(toDecimal256(price, 18) * toDecimal256(quantity, 18), side = 'buy') AS taker_buy_quote_volume,
    min(trade_time) AS first_trade_time,
    max(trade_time) AS last_trade_time
FROM silver_trades
GROUP BY exchange, symbol, window_start;

CREATE VIEW IF NOT EXISTS gold_ohlcv_1d_final AS
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
    min(first_trade_time) AS first_trade_time,
    max(last_trade_time) AS last_trade_time
FROM gold_ohlcv_1d
GROUP BY exchange, symbol, window_start;
