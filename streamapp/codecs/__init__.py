"""Wire codecs for the records streamapp produces and consumes."""

from streamapp.codecs.avro import CodecError, TradeAvroCodec

__all__ = ["CodecError", "TradeAvroCodec"]
