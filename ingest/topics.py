"""Creating the item topic and its dead-letter topic (tests, the demo, `linr produce`).

Production clusters usually create topics by their own process; the ingester never creates
topics itself.
"""

from __future__ import annotations

import logging

log = logging.getLogger("linr.ingest")


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    *,
    dlq: bool = True,
    replication: int = 1,
    timeout_s: float = 30.0,
) -> bool:
    """Create `topic` (and `topic.dlq` when `dlq`) with `partitions` partitions unless it
    exists. True when the item topic was created here."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="linr-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        existing = set(admin.list_topics())
        created = False
        for name, n in ((topic, partitions), (f"{topic}.dlq", 1)):
            if name in existing or (name != topic and not dlq):
                continue
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=n, replication_factor=replication)]
                )
                created = created or name == topic
                log.info("created topic %s with %d partition(s)", name, n)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
