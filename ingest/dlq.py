"""The dead-letter producer: messages that cannot be applied go to `T.dlq` with their
original key and value and why, in headers:

    error             the reason, in words
    source.topic      where the message came from
    source.partition
    source.offset
    cut               only when the dead letter could not carry all of it: what was cut
                      ("value: 2097152 bytes, the first 524288 kept"), or that both key and
                      value were null (a Kafka producer refuses to send that; an empty value
                      is sent instead)

Nothing here raises into the ingester: a record that the producer refuses is cut and sent
again, a send that fails (broker away) is kept and retried. Sends are asynchronous (a burst
of bad messages must not stall ingestion); the ingester asks `pending_offsets()` before a
snapshot so that a snapshot never claims offsets whose dead letters are not yet durable:
after a crash, those messages are read again and dead-lettered again (at least once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ingest.messages import Rejected

log = logging.getLogger("linr.ingest")

_MAX_ERROR_CHARS = 2000
# kafka-python's producer refuses records over max_request_size (1 MiB by default, as is the
# broker's default message.max.bytes): half of it is kept of a larger value, which leaves
# room for the key, the headers and the batch's framing.
_VALUE_BYTES = 512 << 10
_KEY_BYTES = 16 << 10
# A broker configured below that refuses the letter: then only this much is kept.
_SMALL_VALUE_BYTES = 1 << 10


@dataclass
class _Letter:
    rejected: Rejected
    value_limit: int = _VALUE_BYTES


def _cut(data: bytes | None, limit: int, what: str) -> tuple[bytes | None, str | None]:
    if data is None or len(data) <= limit:
        return data, None
    return data[:limit], f"{what}: {len(data)} bytes, the first {limit} kept"


class DeadLetters:
    def __init__(
        self, bootstrap: str, topic: str, source_topic: str, client_id: str, producer: Any = None
    ) -> None:
        """`producer`: a kafka-python KafkaProducer (or a stand-in); made on first use when
        None."""
        self.topic = topic
        self.source_topic = source_topic
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: Any = producer
        self._pending: list[tuple[Any, _Letter]] = []  # (future, what it carries)
        self._unsent: list[_Letter] = []  # the producer could not take them: retried
        self.sent = 0
        self.cut = 0
        self.send_errors = 0

    @property
    def waiting(self) -> int:
        """Dead letters not acknowledged yet (sent or waiting to be)."""
        return len(self._pending) + len(self._unsent)

    def _open(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap.split(","),
                client_id=self._client_id,
                acks="all",
                linger_ms=20,
                # send() blocks the ingest thread while it waits for T.dlq's metadata (a
                # missing topic, a broker away): briefly, then the letter is kept and retried.
                max_block_ms=2_000,
            )
        return self._producer

    def send(self, rejected: list[Rejected]) -> None:
        """Queue dead letters for `rejected`. Never raises: what cannot be sent now is kept."""
        self._send([_Letter(r) for r in rejected])

    def _send(self, letters: list[_Letter]) -> None:
        if not letters:
            return
        try:
            producer = self._open()
        except Exception as e:  # noqa: BLE001 - broker away: kept, retried at the next reap
            self._failed(letters, e)
            return
        for i, letter in enumerate(letters):
            key, value, headers = self._record(letter)
            try:
                fut = producer.send(self.topic, key=key, value=value, headers=headers)
            except Exception as e:  # noqa: BLE001 - a refusal or a full buffer: kept
                self._failed([letter], e)
                if not _too_large(e):  # the broker is away: the rest waits for the retry
                    self._unsent.extend(letters[i + 1 :])
                    return
                continue
            self._pending.append((fut, letter))

    def _record(
        self, letter: _Letter
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        r = letter.rejected
        rec = r.record
        key, key_cut = _cut(rec.key, _KEY_BYTES, "key")
        value, value_cut = _cut(rec.value, letter.value_limit, "value")
        cut = [c for c in (key_cut, value_cut) if c]
        if key is None and value is None:
            value = b""
            cut.append("key and value were both null; sent with an empty value")
        headers = [
            ("error", r.error[:_MAX_ERROR_CHARS].encode("utf-8")),
            ("source.topic", self.source_topic.encode()),
            ("source.partition", str(rec.partition).encode()),
            ("source.offset", str(rec.offset).encode()),
        ]
        if cut:
            headers.append(("cut", "; ".join(cut).encode()))
        return key, value, headers

    def _failed(self, letters: list[_Letter], e: BaseException) -> None:
        self.send_errors += 1
        log.warning("%d dead letter(s) not sent yet: %s: %s", len(letters), type(e).__name__, e)
        for letter in letters:
            if _too_large(e):  # refused for its size: cut shorter when sent again
                letter.value_limit = _SMALL_VALUE_BYTES
        self._unsent.extend(letters)

    def _reap(self) -> None:
        """Drop sends that succeeded; send the failed and unsent ones again."""
        still: list[tuple[Any, _Letter]] = []
        for fut, letter in self._pending:
            if not fut.is_done:
                still.append((fut, letter))
            elif fut.failed():
                self._failed([letter], fut.exception)
            else:
                self.sent += 1
                self.cut += _was_cut(letter)
        self._pending = still
        failed, self._unsent = self._unsent, []
        self._send(failed)

    def pending_offsets(self) -> dict[int, int]:
        """partition -> lowest offset whose dead letter is not yet acknowledged."""
        self._reap()
        low: dict[int, int] = {}
        letters = [letter for _, letter in self._pending] + self._unsent
        for letter in letters:
            p, o = letter.rejected.record.partition, letter.rejected.record.offset
            low[p] = min(o, low.get(p, o))
        return low

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait for pending sends; True when none is left unacknowledged."""
        if self._producer is None and not self._unsent:
            return True
        self._reap()
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except Exception as e:  # noqa: BLE001 - a broker outage: reported, retried later
                log.warning("dead-letter flush failed: %s", e)
        self._reap()
        return not self._pending and not self._unsent

    def close(self, timeout_s: float = 5.0) -> None:
        if self._producer is not None:
            self.flush(timeout_s)
            try:
                self._producer.close(timeout=timeout_s)
            except Exception as e:  # noqa: BLE001
                log.debug("closing the dead-letter producer: %s", e)
            self._producer = None


def _too_large(e: BaseException) -> bool:
    from kafka.errors import MessageSizeTooLargeError

    return isinstance(e, MessageSizeTooLargeError) or "too large" in str(e).lower()


def _was_cut(letter: _Letter) -> bool:
    rec = letter.rejected.record
    return (rec.value is not None and len(rec.value) > letter.value_limit) or (
        rec.key is not None and len(rec.key) > _KEY_BYTES
    )
