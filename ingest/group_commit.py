"""Committing applied offsets to a consumer group, for lag monitoring only: recovery reads
the offsets stored with snapshots, never the group's (see ingest/ingester.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ingest.settings import IngestSettings

log = logging.getLogger("linr.ingest")


class GroupCommitter:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._last_t = 0.0

    def commit(self, offsets: Mapping[int, int], force: bool = False) -> None:
        """Every `commit_every_s` (or now with `force`); never raises."""
        s = self.settings
        if s.group is None or not offsets:
            return
        now = time.monotonic()
        if not force and now - self._last_t < s.commit_every_s:
            return
        self._last_t = now
        try:
            from kafka import KafkaConsumer, TopicPartition
            from kafka.structs import OffsetAndMetadata

            if self._consumer is None:
                self._consumer = KafkaConsumer(
                    bootstrap_servers=s.bootstrap.split(","),
                    client_id=f"{s.client_id}-commit",
                    group_id=s.group,
                    enable_auto_commit=False,
                )
            self._consumer.commit(
                {
                    TopicPartition(s.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except Exception as e:  # noqa: BLE001 - monitoring only; never stops ingestion
            log.warning("group commit failed: %s", e)

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as e:  # noqa: BLE001
                log.debug("closing the group committer: %s", e)
            self._consumer = None
