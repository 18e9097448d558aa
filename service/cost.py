"""What a search request may cost, checked before it is queued (422 naming the limit).

Two bounds, both settings (docs/service.md, "Limits"):
- `max_search_cost`: the sum over the request's queries of vectors x k. A query's scan does
  one score row per vector and keeps k candidates per query, and its answer holds k hits:
  1,024 queries of 64 vectors at k = 1000 (65M) took 7.2 s over 20,000 x 64 items, while a
  small search took 6 ms.
- `max_response_bytes`: the answer's size, estimated from its hits before the search.
"""

from __future__ import annotations

from service.batcher import Query
from service.errors import ApiError
from service.settings import Settings

# Upper bound of one hit without attributes, integer ids: `{"id":` + 19 digits +
# `,"score":` + 23 characters (-3.4028234663852886e+38) + `},` = 59 bytes. String ids are up
# to 256 bytes (plus quotes); attributes are estimated, their size is known only after the
# search (measured: 39-44 bytes per integer-id hit without attributes, benchmarks/
# bench_service_cost.py).
_HIT_BYTES = 60
_STRING_ID_BYTES = 258
_ATTRIBUTE_BYTES = 256


def query_cost(q: Query) -> int:
    """vectors x k of one query."""
    return (1 if q.vectors.ndim == 1 else int(q.vectors.shape[0])) * q.k


def response_bytes(queries: list[Query], string_ids: bool) -> int:
    """The estimated size of the answer: every query's k hits."""
    total = 0
    for q in queries:
        per_hit = _HIT_BYTES + (_STRING_ID_BYTES if string_ids else 0)
        per_hit += _ATTRIBUTE_BYTES if q.include_attributes else 0
        total += q.k * per_hit
    return total


def check_cost(queries: list[Query], settings: Settings, string_ids: bool) -> None:
    cost = sum(query_cost(q) for q in queries)
    if cost > settings.max_search_cost:
        raise ApiError(
            422,
            "over_cost_limit",
            f"request costs {cost} (vectors x k summed over its {len(queries)} queries); "
            f"the limit max_search_cost is {settings.max_search_cost} "
            "(LINR_MAX_SEARCH_COST): send fewer queries, vectors or a smaller k",
        )
    size = response_bytes(queries, string_ids)
    if size > settings.max_response_bytes:
        raise ApiError(
            422,
            "response_too_large",
            f"the answer would take about {size} bytes ({sum(q.k for q in queries)} hits); "
            f"the limit max_response_bytes is {settings.max_response_bytes} "
            "(LINR_MAX_RESPONSE_BYTES): ask for a smaller k or fewer queries",
        )
