"""The router's merge against a plain reference: numpy's lexsort of every shard's hits by
(-score, id), over random lists with many exact ties, at awkward sizes."""

from __future__ import annotations

import numpy as np
import pytest

from service.router.merge import merge_hits


def _shard_lists(rng: np.random.Generator, shards: int, k: int, ids: str) -> list[list[dict]]:
    lists = []
    next_id = 0
    for _ in range(shards):
        n = int(rng.integers(0, k + 1))  # some shards have fewer than k matches, or none
        scores = np.round(rng.standard_normal(n), 1)  # rounded: many equal scores
        order = np.argsort(-scores, kind="stable")  # a shard's own order: ties by position
        own = rng.permutation(n) + next_id
        next_id += n
        hits = []
        for j in order.tolist():
            iid: int | str = int(own[j])
            if ids == "str":  # ids whose byte order differs from their number order
                iid = f"id-{iid * 7919 % 1000:03d}é{j}"
            hits.append({"id": iid, "score": float(scores[j])})
        lists.append(hits)
    return lists


def _reference(lists: list[list[dict]], k: int) -> list[tuple]:
    hits = [h for hits in lists for h in hits]
    if not hits:
        return []
    scores = np.array([h["score"] for h in hits])
    ids = [h["id"] for h in hits]
    if isinstance(ids[0], str):
        rank = {b: r for r, b in enumerate(sorted({i.encode() for i in ids}))}
        keys = np.array([rank[i.encode()] for i in ids])
    else:
        keys = np.array(ids)
    order = np.lexsort((keys, -scores))[:k]
    return [(ids[i], scores[i]) for i in order.tolist()]


@pytest.mark.parametrize("ids", ["int", "str"])
@pytest.mark.parametrize("shards,k", [(1, 1), (2, 10), (3, 7), (17, 100), (64, 1)])
def test_merge_matches_lexsort(rng: np.random.Generator, ids: str, shards: int, k: int) -> None:
    for _ in range(20):
        lists = _shard_lists(rng, shards, k, ids)
        got = [(h["id"], h["score"]) for h in merge_hits(lists, k)]
        assert got == _reference(lists, k)


def test_integer_ids_go_by_value_and_null_scores_last() -> None:
    a = [{"id": 3, "score": None}, {"id": 10, "score": 1.0}]  # null: +inf on the shard
    b = [{"id": 9, "score": 1.0}, {"id": 2, "score": 0.5}]
    got = [h["id"] for h in merge_hits([a, b], 4)]
    assert got == [9, 10, 2, 3]  # 9 before 10: numerically, not as text
    assert [h["id"] for h in merge_hits([a, b], 2)] == [9, 10]


def test_string_ids_go_by_utf8_bytes() -> None:
    # By code point "é" (U+00E9) < "😀" (U+1F600) and by UTF-16 units it is the other way
    # round for "\uffff"; bytewise UTF-8 agrees with code point order.
    a = [{"id": "\uffff", "score": 0.0}]
    b = [{"id": "😀", "score": 0.0}, {"id": "é", "score": 0.0}]
    assert [h["id"] for h in merge_hits([a, b], 3)] == ["é", "\uffff", "😀"]
