"""Writes through the router: produced to the item topic, keyed by id, on the partition
Kafka's default partitioner picks for that key (murmur2 of the key bytes, as the Java
client, kafka-python and librdkafka's `murmur2_random` do), so every producer of the topic
agrees where an id lives, and reads can go to the shard that holds that partition."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.messages import id_text

# A write is answered once the broker has it (acks=all); this bounds the wait.
_PRODUCE_TIMEOUT_S = 10.0


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key` among `partitions` (Java's
    `Utils.toPositive(Utils.murmur2(key)) % numPartitions`)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KafkaWriter:
    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id="linr-router",
            acks="all",
            linger_ms=1,
            max_block_ms=int(_PRODUCE_TIMEOUT_S * 1000),
        )
        self._partitions: int | None = None

    def partitions(self) -> int:
        """How many partitions the topic has (blocks on the first call: metadata)."""
        if self._partitions is None:
            parts = self.producer.partitions_for(self.topic)
            if not parts:
                raise RuntimeError(f"topic {self.topic!r} does not exist")
            self._partitions = len(parts)
        return self._partitions

    def partition_for(self, item_id: int | str) -> int:
        return partition_of(id_text(item_id), self.partitions())

    async def send(self, key: bytes, value: bytes | None) -> tuple[int, int]:
        """Produce one record on its key's partition; (partition, offset) once acknowledged."""
        loop = asyncio.get_running_loop()
        n = self._partitions
        if n is None:
            n = await loop.run_in_executor(None, self.partitions)
        partition = partition_of(key, n)
        done: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, x: Any) -> None:
            if not done.done():
                done.set_result(x) if ok else done.set_exception(x)

        fut = self.producer.send(self.topic, key=key, value=value, partition=partition)
        fut.add_callback(lambda md: loop.call_soon_threadsafe(settle, True, md))
        fut.add_errback(lambda e: loop.call_soon_threadsafe(settle, False, e))
        md = await asyncio.wait_for(done, _PRODUCE_TIMEOUT_S)
        return int(md.partition), int(md.offset)

    def close(self) -> None:
        self.producer.close(timeout=5)
