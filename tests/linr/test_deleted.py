"""Deleted items remember their version: a write older than the delete stays ignored, across
save/load, until the id is written again or the memory's limit pushes it out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import linr
from linr.deleted import NO_VERSION, DeletedVersions

X = np.ones((1, 4), np.float32)


@pytest.mark.parametrize("ids", [[7, 8], ["a", "b/é"]])
def test_an_upsert_older_than_the_delete_is_ignored_after_save_and_load(
    tmp_path: Path, ids: list
) -> None:
    a, b = ids
    idx = linr.Index(4, device="cpu")
    idx.upsert([a, b], np.ones((2, 4), np.float32), versions=[11, 3])
    idx.delete([a])  # no version: deletes unconditionally, remembers the item's 11
    idx.delete([b], versions=[9])
    idx.save(tmp_path)
    idx = linr.Index.load(tmp_path, "cpu")
    assert not idx.upsert([a], X, versions=[2]).applied[0] and a not in idx
    assert not idx.upsert([b], X, versions=[8]).applied[0] and b not in idx
    assert idx.upsert([b], X, versions=[9]).applied[0] and b in idx  # not below: applies
    assert idx.upsert([a], X).applied[0] and a in idx  # no version: always applies
    assert idx.upsert([a], X, versions=[1]).applied[0]  # written again: forgotten


def test_a_versioned_delete_of_an_absent_id_is_remembered() -> None:
    idx = linr.Index(4, device="cpu")
    idx.upsert([1], X)
    idx.delete([5], versions=[20])
    assert not idx.upsert([5], X, versions=[19]).applied[0]
    assert idx.upsert([5], X, versions=[20]).applied[0]


def test_the_oldest_deletes_are_forgotten_past_the_limit() -> None:
    d = DeletedVersions(limit=3)
    d.remember([1, 2, 3], np.array([10, 20, 30]))
    d.remember([1], np.array([5]))  # keeps the higher 10, and is now the newest
    d.remember([4], np.array([40]))
    assert len(d) == 3
    assert d.versions([1, 2, 3, 4]).tolist() == [10, NO_VERSION, 30, 40]
    d.remember([9], np.array([NO_VERSION]))  # nothing known: nothing kept
    assert len(d) == 3


def test_clear_forgets_items_and_deleted_versions() -> None:
    idx = linr.Index(4, device="cpu")
    idx.upsert([1, 2], np.ones((2, 4), np.float32), versions=[5, 6])
    idx.delete([1])
    idx.clear()
    assert len(idx) == 0
    assert idx.upsert([1], X, versions=[1]).applied[0]
