"""Which log an index holds, so that offsets are never read in a different log.

A topic that is deleted and created again, or a broker that comes back empty, starts its
partitions at offset 0 again: offsets stored with a snapshot of the old log would then skip
(or re-read) records of the new one. The identity stored with every snapshot is the topic
id (Kafka >= 2.8 gives each topic a UUID) and, for brokers without topic ids, each
partition's log start offset and leader epoch. `reset_reason` compares a stored identity
with the broker's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LogIdentity:
    topic_id: str | None
    # partition -> (log start offset, leader epoch); -1 where the broker does not say
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic_id": self.topic_id,
            "partitions": {str(p): list(v) for p, v in sorted(self.partitions.items())},
        }

    @classmethod
    def from_json(cls, obj: Any) -> LogIdentity | None:
        if not isinstance(obj, dict):
            return None
        parts = {int(p): (int(v[0]), int(v[1])) for p, v in obj.get("partitions", {}).items()}
        return cls(obj.get("topic_id"), parts)

    def merged(self, other: LogIdentity) -> LogIdentity:
        """This identity, plus partitions only `other` knows (a partition read later)."""
        return LogIdentity(self.topic_id or other.topic_id, {**other.partitions, **self.partitions})


def reset_reason(
    topic: str, stored: LogIdentity, now: LogIdentity, offsets: dict[int, int]
) -> str | None:
    """Why the broker's log `now` is not the log `stored` describes, or None if it is."""
    if stored.topic_id is not None and now.topic_id is not None:
        if stored.topic_id != now.topic_id:
            return (
                f"topic {topic!r} was recreated: its id is {now.topic_id}, the index was "
                f"built from {stored.topic_id}"
            )
        return None
    for p, (start, epoch) in sorted(stored.partitions.items()):
        if p not in now.partitions:
            continue
        cur_start, cur_epoch = now.partitions[p]
        if 0 <= cur_epoch < epoch:
            return (
                f"topic {topic!r} partition {p}: leader epoch {cur_epoch} is below the "
                f"{epoch} the index saw (a new log)"
            )
        if cur_start < start:
            return (
                f"topic {topic!r} partition {p}: the log starts at {cur_start}, before the "
                f"{start} the index saw (a new log)"
            )
    return None


def read_identity(consumer: Any, topic: str, tps: list[Any], timeout_ms: int) -> LogIdentity:
    """The broker's identity of `topic`'s log, from a kafka-python consumer assigned `tps`.
    Asks the broker for log start offsets (a round trip that fails while it is down: raises
    KafkaTimeoutError); the topic id and leader epochs come from its metadata cache."""
    starts = consumer.beginning_offsets(tps, timeout_ms=timeout_ms)
    # kafka-python keeps topic ids and leader epochs in its cluster metadata (ClusterMetadata
    # .topic_id, kafka-python >= 3); the consumer has no public accessor for it.
    cluster = getattr(consumer, "_cluster", None)
    epoch_of = getattr(cluster, "leader_epoch_for_partition", lambda _: None)
    parts = {}
    for tp in tps:
        epoch = epoch_of(tp)
        parts[tp.partition] = (int(starts[tp]), -1 if epoch is None else int(epoch))
    return LogIdentity(cached_topic_id(consumer, topic), parts)


def cached_topic_id(consumer: Any, topic: str) -> str | None:
    """The topic id in the consumer's metadata cache (no round trip), or None. kafka-python
    (>= 3) keeps topic ids and leader epochs in its cluster metadata (ClusterMetadata); the
    consumer has no public accessor for it."""
    cluster = getattr(consumer, "_cluster", None)
    tid = getattr(cluster, "topic_id", lambda _: None)(topic) if cluster is not None else None
    return None if tid is None or int(getattr(tid, "int", 1)) == 0 else str(tid)
