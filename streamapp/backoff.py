"""Retry delays: one capped exponential backoff for every retry loop (feeds, backfill, registry)."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None, *, jitter: bool = True
) -> float:
    """Delay before retry ``attempt`` (0-based): ``min(cap, base * 2**attempt)``.

    With ``jitter`` ("equal jitter") the delay is uniform in [bound/2, bound], so many
    clients retrying at once spread out and none retries in a tight loop; without it,
    the bound itself (1, 2, 4, ... capped).
    """
    bound = min(cap_s, base_s * (2 ** min(attempt, 32)))
    return bound * (0.5 + 0.5 * (rng or random).random()) if jitter else bound
