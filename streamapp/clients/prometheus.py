"""Prometheus's HTTP query API (``/api/v1/query``): instant queries, as plain (labels, value) pairs."""

from __future__ import annotations

import math

import httpx

from streamapp.errors import StreamappError


def query(url: str, expr: str, *, timeout_s: float = 10.0) -> list[tuple[dict[str, str], float]]:
    """The instant vector (or scalar) ``expr`` evaluates to now, at the Prometheus at ``url``."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": expr}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise StreamappError(f"cannot reach Prometheus at {url}: {exc}") from exc
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or body.get("status") != "success":
        raise StreamappError(f"Prometheus at {url} refused {expr!r}: {body.get('error') or response.text[:300]}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise StreamappError(f"{expr!r} is a {data['resultType']}, not an instant vector")
    return [(sample["metric"], float(sample["value"][1])) for sample in data["result"]]


def value(url: str, expr: str) -> float | None:
    """The one value ``expr`` gives (``sum(...)`` and the like), None when it gives no sample or NaN."""
    found = query(url, expr)
    if not found:
        return None
    if len(found) > 1:
        raise StreamappError(f"{expr!r} gives {len(found)} series, not one: aggregate it")
    number = found[0][1]
    return None if math.isnan(number) else number
