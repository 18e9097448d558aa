"""Read your writes: with Kafka on, item writes go through the log, not into the index.

A write is produced to the item topic keyed by id (so every replica applies it in log order,
and it survives restarts as the rest of the log does) and answered with its position once
the broker has it (acks=all). A search with `"after": {"<partition>": offset}` then waits
until the index has applied that record (`wait_for_offsets`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from service.errors import ApiError, invalid

# A write is answered once the broker has it; this bounds the wait.
_PRODUCE_TIMEOUT_S = 10.0
# How often a search with `after` looks at the applied offsets: well under the ingester's
# batch period (tens of ms at 5,000 msgs/s, docs/ingest.md), at no measurable CPU cost.
_AFTER_POLL_S = 0.002


class KafkaWriter:
    def __init__(self, bootstrap: str, topic: str, client_id: str = "linr-serve-writes") -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id=client_id,
            acks="all",
            linger_ms=1,
            max_block_ms=int(_PRODUCE_TIMEOUT_S * 1000),
        )

    async def send(
        self, key: bytes, value: bytes | None, partition: int | None = None
    ) -> tuple[int, int]:
        """Produce one record on `partition` (None: the default partitioner picks it from
        the key); (partition, offset) once the broker acknowledged it, else 503."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, x: Any) -> None:
            if not done.done():
                done.set_result(x) if ok else done.set_exception(x)

        # send() may block on metadata (the first send, a new partition leader): a thread.
        fut = await loop.run_in_executor(
            None,
            lambda: self.producer.send(self.topic, key=key, value=value, partition=partition),
        )
        fut.add_callback(lambda md: loop.call_soon_threadsafe(settle, True, md))
        fut.add_errback(lambda e: loop.call_soon_threadsafe(settle, False, e))
        try:
            md = await asyncio.wait_for(done, _PRODUCE_TIMEOUT_S)
        except Exception as e:
            raise ApiError(
                503, "unavailable", f"the broker did not take the write: {type(e).__name__}: {e}"
            ) from None
        return int(md.partition), int(md.offset)

    def close(self) -> None:
        self.producer.close(timeout=5)


def parse_after(after: Mapping[str, int], where: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for p, o in after.items():
        if not (p.isascii() and p.isdigit()) or len(p) > 9:
            raise invalid(f"{where}after: partition {p!r} is not a partition number")
        out[int(p)] = o
    return out


async def wait_for_offsets(ingester: Any, after: dict[int, int], wait_ms: float) -> None:
    """Return once `ingester` has applied the record at `after[p]` of every partition p;
    504 `not_caught_up` after `wait_ms`."""
    if ingester is None:
        raise invalid("after: this service reads no Kafka topic (start it with --kafka-bootstrap)")
    deadline = time.monotonic() + wait_ms / 1000.0
    while not ingester.caught_up(after):
        if time.monotonic() >= deadline:
            stopped = ingester.stats().get("stopped")
            applied = ingester.stats()["offsets"]
            why = f"; ingestion stopped: {stopped}" if stopped else ""
            raise ApiError(
                504,
                "not_caught_up",
                f"the index has not applied offsets {after} within {wait_ms:g} ms (next "
                f"offsets to apply: {applied}){why}",
            )
        await asyncio.sleep(_AFTER_POLL_S)
