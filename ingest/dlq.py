"""The dead-letter producer: messages that cannot be applied go to `T.dlq` with their
original key and value and the reason in an `error` header.

Sends are asynchronous (a burst of bad messages must not stall ingestion); the ingester
asks `pending_offsets()` before a snapshot so that a snapshot never claims offsets whose
dead letters are not yet durable: after a crash, those messages are read again and
dead-lettered again (at least once, possibly twice).
"""

from __future__ import annotations

import logging
from typing import Any

from ingest.messages import Rejected

log = logging.getLogger("linr.ingest")

_MAX_ERROR_CHARS = 2000


class DeadLetters:
    def __init__(self, bootstrap: str, topic: str, source_topic: str, client_id: str) -> None:
        self.topic = topic
        self.source_topic = source_topic
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: Any = None
        self._pending: list[tuple[Any, Rejected]] = []  # (future, what it carries)
        self.sent = 0

    def _open(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap.split(","),
                client_id=self._client_id,
                acks="all",
                linger_ms=20,
                max_block_ms=10_000,
            )
        return self._producer

    def send(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        producer = self._open()
        for r in rejected:
            rec = r.record
            headers = [
                ("error", r.error[:_MAX_ERROR_CHARS].encode("utf-8")),
                ("source.topic", self.source_topic.encode()),
                ("source.partition", str(rec.partition).encode()),
                ("source.offset", str(rec.offset).encode()),
            ]
            fut = producer.send(self.topic, key=rec.key, value=rec.value, headers=headers)
            self._pending.append((fut, r))

    def _reap(self) -> None:
        """Drop sends that succeeded; resend the failed ones."""
        still: list[tuple[Any, Rejected]] = []
        failed: list[Rejected] = []
        for fut, r in self._pending:
            if not fut.is_done:
                still.append((fut, r))
            elif fut.failed():
                log.warning("dead letter for %s failed: %s", r.record.offset, fut.exception)
                failed.append(r)
            else:
                self.sent += 1
        self._pending = still
        if failed:
            self.send(failed)

    def pending_offsets(self) -> dict[int, int]:
        """partition -> lowest offset whose dead letter is not yet acknowledged."""
        self._reap()
        low: dict[int, int] = {}
        for _, r in self._pending:
            p, o = r.record.partition, r.record.offset
            low[p] = min(o, low.get(p, o))
        return low

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait for pending sends; True when none is left unacknowledged."""
        if self._producer is None:
            return True
        try:
            self._producer.flush(timeout=timeout_s)
        except Exception as e:  # noqa: BLE001 - a broker outage: reported, retried later
            log.warning("dead-letter flush failed: %s", e)
        self._reap()
        return not self._pending

    def close(self, timeout_s: float = 5.0) -> None:
        if self._producer is not None:
            self.flush(timeout_s)
            self._producer.close(timeout=timeout_s)
            self._producer = None
