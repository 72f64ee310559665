"""Header names on raw-topic records, declared once: the feeds write them, the normalizer and
``streamapp replay`` read them."""

RECEIVE_TIME_US = "streamapp.receive_time_us"  # ASCII decimal, µs since the epoch (UTC)
CONNECTION_ID = "streamapp.connection_id"      # the feed connection that received the frame
SOURCE = "streamapp.source"                    # b"ws" (live frame) or b"rest-backfill"
BACKFILL_RANGE = "streamapp.backfill_range"    # "<first>-<last>": the missing trade ids asked for
BACKFILL_URL = "streamapp.backfill_url"        # the REST request whose body is the record's value

SOURCE_WS = b"ws"
SOURCE_BACKFILL = b"rest-backfill"
