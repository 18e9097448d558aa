"""Writes through the router: produced to the item topic, keyed by id, on the partition
Kafka's default partitioner picks for that key (murmur2 of the key bytes, as the Java
client, kafka-python and librdkafka's `murmur2_random` do), so every producer of the topic
agrees where an id lives, and reads can go to the shard that holds that partition."""

from __future__ import annotations

import asyncio

from ingest.messages import id_text
from service.writes import KafkaWriter as _Writer


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key` among `partitions` (Java's
    `Utils.toPositive(Utils.murmur2(key)) % numPartitions`)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KafkaWriter(_Writer):
    """The service's writer (service/writes.py), with the partition chosen here, so that
    reads can be sent to the shard that reads it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, client_id="linr-router")
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

    async def send(
        self, key: bytes, value: bytes | None, partition: int | None = None
    ) -> tuple[int, int]:
        """Produce one record on its key's partition; (partition, offset) once acknowledged."""
        if partition is None:
            n = self._partitions
            if n is None:
                n = await asyncio.get_running_loop().run_in_executor(None, self.partitions)
            partition = partition_of(key, n)
        return await super().send(key, value, partition)
