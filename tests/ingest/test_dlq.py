"""The dead-letter producer never raises into the ingester: a refused letter is cut shorter
and sent again, a failed send is kept and retried, and unacknowledged letters hold back the
snapshot's offsets. A fake producer stands in for kafka-python's here; the real one, over
the real broker, is in test_real_producers.py."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("kafka")

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError  # noqa: E402

from ingest.dlq import DeadLetters  # noqa: E402
from ingest.messages import Record, Rejected  # noqa: E402


class _Done:
    is_done = True

    def failed(self) -> bool:
        return False


class FakeProducer:
    """Refuses values over `max_bytes` (as kafka-python does, in send()), and everything
    while `away`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.away = False
        self.sent: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    def send(self, topic: str, key: Any, value: Any, headers: Any) -> _Done:
        if self.away:
            raise KafkaTimeoutError("Failed to update metadata after 2.0 secs.")
        if len(value or b"") > self.max_bytes:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes")
        self.sent.append((key, value, dict(headers)))
        return _Done()

    def flush(self, timeout: float) -> None:
        pass


def letters(*values: bytes | None) -> list[Rejected]:
    return [Rejected(Record(0, i, b"k", v), "bad") for i, v in enumerate(values)]


def test_a_refused_letter_is_cut_shorter_and_the_others_still_go() -> None:
    fake = FakeProducer(max_bytes=4096)
    dlq = DeadLetters("unused:9092", "t.dlq", "t", "test", producer=fake)
    dlq.send(letters(b"a", b"x" * 3_000_000, b"b"))
    assert [v for _, v, _ in fake.sent] == [b"a", b"b"]  # the big one was refused
    assert dlq.flush(0.1) and dlq.pending_offsets() == {}  # sent again, cut to 1 KiB
    key, value, headers = fake.sent[-1]
    assert value == b"x" * 1024 and b"3000000 bytes, the first 1024 kept" in headers["cut"]
    assert headers["source.offset"] == b"1" and dlq.waiting == 0


def test_a_broker_away_keeps_the_letters_and_holds_offsets_back() -> None:
    fake = FakeProducer(max_bytes=1 << 20)
    dlq = DeadLetters("unused:9092", "t.dlq", "t", "test", producer=fake)
    fake.away = True
    dlq.send(letters(b"a", b"b", b"c"))  # does not raise
    assert dlq.pending_offsets() == {0: 0} and dlq.waiting == 3
    assert not dlq.flush(0.1)
    fake.away = False
    assert dlq.flush(0.1) and dlq.pending_offsets() == {}
    assert [v for _, v, _ in fake.sent] == [b"a", b"b", b"c"]
