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
from collections.abc import Sequence
from typing import Any

Hit = dict[str, Any]


def _neg_score(hit: Hit) -> float:
    s = hit.get("score")
    return -s if isinstance(s, (int, float)) and math.isfinite(s) else math.inf


def hit_key(hit: Hit) -> tuple[float, int, Any]:
    """Sort key, ascending = better: (-score, id kind, id)."""
    iid = hit["id"]
    if isinstance(iid, str):
        return (_neg_score(hit), 1, iid.encode())
    return (_neg_score(hit), 0, iid)


def merge_hits(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The best `k` of the shards' result lists, each best first by score.

    A shard orders equal scores by its internal position, not by id, so the lists are
    merged by score alone (O(k log shards), reading only what it keeps), the group of hits
    tied with the k-th score is taken whole, and only that prefix is sorted by the full key.
    A list out of score order (a null score first: a non-finite score on the shard) is
    sorted first."""
    runs = []
    for hits in lists:
        if not hits:
            continue
        scores: list[Any] = [h.get("score") for h in hits]  # C speed: no key call per hit
        ordered = None not in scores and scores == sorted(scores, reverse=True)
        runs.append(hits if ordered else sorted(hits, key=_neg_score))
    merged = heapq.merge(*runs, key=_neg_score)
    top = list(itertools.islice(merged, k))
    if len(top) == k:
        last = _neg_score(top[-1])
        for h in merged:  # the rest of the k-th place's tie group
            if _neg_score(h) != last:
                break
            top.append(h)
    top.sort(key=hit_key)
    return top[:k]
