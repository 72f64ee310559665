"""Pure per-exchange normalizers: one raw frame → trades, ``Ignored`` or a ``Rejection``. No I/O.

Each exchange module exposes the same function::

    normalize(frame: bytes, *, receive_time_us, raw_partition, raw_offset,
              symbols: SymbolMap, now_us, max_skew_us) -> Result

See :mod:`streamapp.normalize.result` for the outcomes and rejection codes.
"""

from streamapp.normalize.result import IGNORED_KINDS, REJECTION_CODES, Ignored, Rejection, Result
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP, DEFAULT_KRAKEN_MAP, SymbolMap

__all__ = [
    "DEFAULT_BINANCE_MAP",
    "DEFAULT_KRAKEN_MAP",
    "IGNORED_KINDS",
    "REJECTION_CODES",
    "Ignored",
    "Rejection",
    "Result",
    "SymbolMap",
]
