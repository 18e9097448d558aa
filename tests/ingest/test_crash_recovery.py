"""Crash recovery, for real: `linr serve` with the ingester runs as a subprocess while items,
replacements and deletes stream in; it is SIGKILLed at random moments (some while a snapshot
is being written) and restarted. At the end the live index must hold exactly what applying
every message once, in order, gives: nothing lost, nothing resurrected.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linr
from ingest import snapshots
from ingest.messages import Record, encode_delete, encode_upsert
from tests.ingest.conftest import Broker, free_port, wait_for
from tests.ingest.oracle import apply_one_by_one

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

D = 16
SAMPLE = 400  # ids checked one by one over HTTP on the live server
# Six kills in `make test`; LINR_CRASH_KILLS=20 for a longer run (about 3x the time).
KILLS = int(os.environ.get("LINR_CRASH_KILLS", "6"))
MID_SNAPSHOT_KILLS = {1, 3}  # iterations that wait for a snapshot write to be under way
ROOT = Path(__file__).resolve().parents[2]


class Stream(threading.Thread):
    """Produces a seeded random mix of upserts (some versioned), tombstones, explicit deletes
    and a few bad messages at ~1,000 messages/s, remembering them in send order."""

    def __init__(self, bootstrap: str, topic: str, seed: int) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaProducer

        # One request in flight: a retried send can never overtake a later one of its key.
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
        )
        self.topic = topic
        self.rng = np.random.default_rng(seed)
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.halt = threading.Event()
        self.version = 0
        self.next_id = 0

    def message(self) -> tuple[bytes, bytes | None]:
        rng = self.rng
        self.version += 1
        r = rng.random()
        if r < 0.5 or self.next_id == 0:  # a new item: most ids are written only once or twice,
            key = self.next_id  # so a lost message shows as a missing or stale item
            self.next_id += 1
        else:
            key = int(rng.integers(0, self.next_id))
        # Every third id carries versions, sometimes behind the latest: those are ignored.
        version = self.version - int(rng.integers(0, 40)) if key % 3 == 0 else None
        if r < 0.7:
            attrs = {"g": f"g{key % 5}", "n": int(rng.integers(0, 1000))}
            vec = rng.standard_normal(D).astype(np.float32)
            return encode_upsert(key, vec, attrs, version, b64=bool(rng.random() < 0.7))
        if r < 0.85:
            return encode_delete(key)
        if r < 0.98:
            return encode_delete(key, version, tombstone=False)
        return str(key).encode(), b'{"op": "upsert", "id": ' + str(key).encode()

    def run(self) -> None:
        t0, n = time.monotonic(), 0
        while not self.halt.is_set():
            key, value = self.message()
            self.producer.send(self.topic, key=key, value=value)
            self.sent.append((key, value))
            n += 1
            ahead = t0 + n / 1000 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush()
        self.producer.close()


def serve(broker: Broker, topic: str, snap: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("serve_slow_snapshots.py")),
        "serve",
        "--dim",
        str(D),
        "--quantization",
        "int8",
        "--device",
        "cpu",
        "--kafka-bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--snapshot-dir",
        str(snap),
        "--snapshot-every-s",
        "0.4",
        "--snapshot-every-messages",
        "700",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def started(proc: subprocess.Popen[bytes], port: int) -> Any:
    """A condition: the server answers /healthz, or it has exited (checked next)."""
    return lambda: healthy(port) or proc.poll() is not None


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def tmp_dirs(snap: Path) -> list[str]:
    return [p.name for p in snap.iterdir() if p.name.startswith(".tmp-")] if snap.is_dir() else []


@pytest.mark.slow
@pytest.mark.partitions(2)
def test_sigkill_at_random_moments_loses_nothing(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    snap = tmp_path / "snapshots"
    port = free_port()
    rnd = random.Random(1234)
    stream = Stream(broker.bootstrap, topic, seed=7)
    stream.start()
    killed_mid_write = 0
    with open(tmp_path / "serve.log", "ab") as log:
        try:
            for i in range(KILLS):
                proc = serve(broker, topic, snap, port, log)
                try:
                    # Generous: importing torch alone took 30 s on the shared, overloaded
                    # dev machine (load average 23 on 2 cores).
                    wait_for(started(proc, port), 180, "the server to start")
                    assert proc.poll() is None, f"the server exited; see {tmp_path}/serve.log"
                    if i in MID_SNAPSHOT_KILLS:
                        wait_for(lambda: bool(tmp_dirs(snap)), 90, "a snapshot write")
                        time.sleep(rnd.uniform(0.0, 0.2))
                    elif i == 0:
                        # The first life publishes one snapshot before its kill, so that the
                        # later ones recover from snapshots on a slow machine too (a server
                        # started on a backlog took 2-8 s to its first one under load).
                        wait_for(lambda: bool(snapshots.list_snapshots(snap)), 90, "a snapshot")
                        time.sleep(rnd.uniform(0.0, 0.2))
                    else:
                        time.sleep(rnd.uniform(0.2, 2.0))
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                killed_mid_write += bool(tmp_dirs(snap))
        finally:
            stream.halt.set()
            stream.join(30)
        assert killed_mid_write >= len(MID_SNAPSHOT_KILLS)
        assert snapshots.list_snapshots(snap), "no snapshot survived: nothing was recovered"
        # Where the last life must resume: the newest complete snapshot's offsets.
        resume_at = sum(
            snapshots.check_snapshot(snapshots.list_snapshots(snap)[0])["offsets"].values()
        )
        assert resume_at > 0

        proc = serve(broker, topic, snap, port, log)
        try:
            try:
                wait_for(lambda: ready(port), 180, "readiness after the last restart")
            except AssertionError as e:  # say where the ingester was
                got = httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=5).json()
                raise AssertionError(f"{e}; sent {len(stream.sent)}: {got['ingest']}") from None
            stats = httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=5).json()
            n_ids = stream.next_id
            sample = rnd.sample(range(n_ids), min(SAMPLE, n_ids))
            live = live_items(port, sample)
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful: writes a final snapshot
            proc.wait(60)

    records = [Record(0, i, k, v) for i, (k, v) in enumerate(stream.sent)]
    expected = linr.Index(D, device="cpu")  # fp32: the vectors exactly as produced
    apply_one_by_one(expected, records)
    # The live server: its count, and a sample of ids present or absent as expected.
    assert stats["count"] == len(expected), "lost or resurrected items"
    assert set(live) == {i for i in sample if i in expected}
    check_items(live, expected)
    # Everything, through the final snapshot the server wrote when it was stopped.
    final = snapshots.load_latest(snap, "cpu")
    assert final is not None
    index = final[0]
    assert set(index.ids()) == set(expected.ids()), "lost or resurrected items"
    check_items(
        {
            i: (index.get(i).vector, index.get(i).attributes)  # type: ignore[union-attr]
            for i in index.ids()
        },
        expected,
    )
    # The last restart resumed from the newest snapshot: it applied at most the messages
    # after that snapshot's offsets, not the whole log. (How far the snapshots got depends on
    # the machine: a life killed 0.2-2 s after it answers may not reach its first snapshot.)
    assert stats["ingest"]["applied"] <= len(records) - resume_at


def check_items(got: dict[Any, tuple[Any, dict[str, Any]]], expected: linr.Index) -> None:
    for id_, (vec, attrs) in got.items():
        item = expected.get(id_)
        assert item is not None and attrs == item.attributes, id_
        # int8 keeps each vector within half a quantization step (max|x| / 127 / 2) of the
        # vector of the message that put it there.
        step = float(np.abs(item.vector).max()) / 127
        np.testing.assert_allclose(vec, item.vector, atol=step / 2 + 1e-6, rtol=0)


def live_items(port: int, ids: list[int]) -> dict[int, tuple[list[float], dict[str, Any]]]:
    """The items among `ids` that the live server holds, with vectors and attributes."""
    out = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        for key in ids:
            r = c.get(f"/v1/items/{key}")
            if r.status_code == 404:
                continue
            assert r.status_code == 200, r.text
            body = r.json()
            out[body["id"]] = (body["vector"], body.get("attributes") or {})
    return out
