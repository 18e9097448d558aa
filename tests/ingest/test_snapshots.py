"""Snapshots: atomic, keep the newest two, a torn or half-written one is never loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import linr
from ingest import snapshots


def make_index(n: int, seed: int = 0) -> linr.Index:
    idx = linr.Index(4, device="cpu")
    x = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)
    idx.upsert(list(range(n)), x, [{"k": str(i % 3)} for i in range(n)])
    return idx


def test_round_trip_with_offsets(tmp_path: Path) -> None:
    idx = make_index(10)
    path = snapshots.write_snapshot(idx, tmp_path, {1: 7, 0: 3}, topic="items")
    assert path.name == "snap-0000000001" and path.parent == tmp_path
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None
    loaded, offsets = got
    assert offsets == {0: 3, 1: 7}
    assert loaded.manifest_extra["offsets"] == {"0": 3, "1": 7}
    assert loaded.manifest_extra["topic"] == "items"
    assert sorted(loaded.ids()) == list(range(10))
    q = np.ones((2, 4), np.float32)
    assert loaded.search(q, k=5).ids == idx.search(q, k=5).ids


def test_empty_or_missing_dir_gives_none(tmp_path: Path) -> None:
    assert snapshots.load_latest(tmp_path / "nope") is None
    assert snapshots.load_latest(tmp_path) is None


def test_keeps_the_newest_two_and_loads_the_newest(tmp_path: Path) -> None:
    for i in range(4):
        snapshots.write_snapshot(make_index(i + 1), tmp_path, {0: i})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["snap-0000000003", "snap-0000000004"]
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None and got[1] == {0: 3} and len(got[0]) == 4


@pytest.mark.parametrize("damage", ["truncate", "delete", "no-info"])
def test_a_torn_snapshot_falls_back_to_the_one_before(tmp_path: Path, damage: str) -> None:
    snapshots.write_snapshot(make_index(3), tmp_path, {0: 30})
    newest = snapshots.write_snapshot(make_index(5), tmp_path, {0: 50})
    victim = newest / "tensors.safetensors"
    if damage == "truncate":
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        victim.unlink()
    else:
        (newest / "snapshot.json").unlink()
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None
    assert got[1] == {0: 30} and len(got[0]) == 3


def test_a_snapshot_whose_tensors_are_garbage_is_skipped(tmp_path: Path) -> None:
    snapshots.write_snapshot(make_index(3), tmp_path, {0: 30})
    newest = snapshots.write_snapshot(make_index(5), tmp_path, {0: 50})
    victim = newest / "tensors.safetensors"
    victim.write_bytes(b"\x00" * victim.stat().st_size)  # right size, wrong bytes
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None and got[1] == {0: 30}


_WRITER = """
import sys, time, numpy as np, linr
from ingest import snapshots
real_fsync = snapshots._fsync
def held_fsync(path):  # hold the writer after its files are written, before the rename
    if path.name == "snapshot.json":
        time.sleep(30)
    real_fsync(path)
snapshots._fsync = held_fsync
idx = linr.Index(4, device="cpu")
idx.upsert(list(range(50)), np.ones((50, 4), np.float32))
print("writing", flush=True)
snapshots.write_snapshot(idx, sys.argv[1], {0: 50})
"""


def test_killed_during_a_write_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    """SIGKILL while the files of a snapshot are written (the writer script holds itself
    there): the temporary directory is ignored, and removed by the next write."""
    snapshots.write_snapshot(make_index(3), tmp_path, {0: 3})
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the writer never began"
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    tmp_dirs = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert tmp_dirs and (tmp_dirs[0] / "manifest.json").exists()  # it got that far
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None and got[1] == {0: 3} and len(got[0]) == 3
    snapshots.write_snapshot(make_index(4), tmp_path, {0: 4})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None and got[1] == {0: 4}
