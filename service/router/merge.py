"""The router's exact merge of per-shard top-k lists.

Each shard answers its own exact top-k, best first. The global top-k is contained in their
union (an item outside its shard's top-k has k better items there), so merging the lists
and keeping the first k is exact. Across shards equal scores go by ascending id: integers
numerically, strings by their UTF-8 bytes (integer ids before string ids, should a
deployment mix them). A null score (not finite on the shard) sorts last.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

Hit = dict[str, Any]


def hit_key(hit: Hit) -> tuple[float, int, Any]:
    """Sort key, ascending = better: (-score, id kind, id)."""
    score = hit.get("score")
    neg = -score if isinstance(score, (int, float)) and math.isfinite(score) else math.inf
    iid = hit["id"]
    if isinstance(iid, str):
        return (neg, 1, iid.encode())
    return (neg, 0, iid)


def merge_hits(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The best `k` of the shards' result lists, each already best first by score.

    A shard orders equal scores by its internal position, not by id, so each list is put
    in key order first; that sort is linear on a list that is sorted but for ties (timsort
    finds the runs), and the merge costs O(k log shards) after it."""
    runs: Iterable[list[Hit]] = (sorted(hits, key=hit_key) for hits in lists if hits)
    return list(itertools.islice(heapq.merge(*runs, key=hit_key), k))
