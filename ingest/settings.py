"""Settings of one ingester: where the log is, which part of it to read, when to snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Tuning constants, measured on the 2-core dev machine with a local broker (D=128, vector_b64):
# batches of 5,000 records amortize the per-call cost of index.upsert (~0.3 ms) while holding
# the index lock for only ~2-4 ms, so searches waiting on it barely notice.
_MAX_BATCH = 5_000
_POLL_TIMEOUT_MS = 100
# How long the broker may hold a fetch waiting for data. At 5,000 msgs/s on a local tansu
# broker, 500 ms (Kafka's default) gave freshness p50/p99 of 137/289 ms; 50 ms gave 18/44 ms.
_FETCH_MAX_WAIT_MS = 50
# The broker answers a fetch once it holds this much (or after fetch_max_wait_ms). Fewer,
# larger batches cost the serving process less CPU per message (poll and apply overheads are
# per batch), which is what searches sharing its cores feel; see docs/ingest.md.
_FETCH_MIN_BYTES = 256 << 10
# Before decoding and before applying a batch, wait up to this long for the index to be
# free of searches, so ingest work runs between them rather than beside them on the same
# cores. At 5,000 upserts/s and 50 searches/s on the dev machine, search p99 with / without
# ingestion went from 1.31-1.38x to 1.12-1.30x over three runs each; see BENCHMARKS.md.
_YIELD_TO_SEARCHES_MS = 20.0


class IngestSettings(BaseModel):
    """What `Ingester` needs. The service fills it from `linr serve` flags / `LINR_*` variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str = Field(description="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].")
    topic: str = "linr-items"
    group: str | None = Field(
        default=None,
        description="Consumer group to commit offsets under, for monitoring only: recovery "
        "uses the offsets stored in snapshots, never the group's.",
    )
    partitions: list[int] | None = Field(
        default=None, description="Partitions to consume (a shard's subset); None: all."
    )
    snapshot_dir: Path | None = None
    snapshot_every_s: float = Field(default=30.0, gt=0)
    snapshot_every_messages: int = Field(default=100_000, ge=1)
    snapshot_keep: int = Field(default=2, ge=1, description="Newest snapshots kept on disk.")
    snapshot_retry_s: float = Field(
        default=5.0, gt=0, description="Longest wait before retrying a snapshot that failed."
    )
    on_log_reset: Literal["stop", "rebuild"] = Field(
        default="stop",
        description="When the topic the index was built from is gone or recreated: stop "
        "ingesting (and say why), or rebuild the index from the new log's beginning.",
    )
    dlq_topic: str | None = Field(default=None, description="Dead-letter topic; None: T.dlq.")
    max_batch: int = Field(default=_MAX_BATCH, ge=1, description="Records applied per batch.")
    poll_timeout_ms: int = Field(default=_POLL_TIMEOUT_MS, ge=1)
    fetch_max_wait_ms: int = Field(default=_FETCH_MAX_WAIT_MS, ge=0)
    fetch_min_bytes: int = Field(
        default=_FETCH_MIN_BYTES,
        ge=1,
        description="Bytes the broker gathers before answering a fetch (within "
        "fetch_max_wait_ms): larger batches, less CPU per message.",
    )
    yield_to_searches_ms: float = Field(
        default=_YIELD_TO_SEARCHES_MS,
        ge=0,
        description="Longest wait, before decoding and before applying a batch, for no "
        "search to be running (0: never wait). Bounds the freshness it costs.",
    )
    freshness_window: int = Field(
        default=20_000, ge=1, description="Latest messages whose freshness stats() reports."
    )
    retry_backoff_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    retry_backoff_max_s: float = Field(default=10.0, gt=0, description="Longest retry delay.")
    commit_every_s: float = Field(default=5.0, gt=0, description="Group commits (with group).")
    client_id: str = "linr-ingest"

    @field_validator("partitions", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            v = [int(p) for p in v.split(",") if p.strip()] or None
        return v

    @field_validator("partitions")
    @classmethod
    def _non_negative(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            bad = [p for p in v if p < 0]
            if bad:
                raise ValueError(f"partition numbers must be >= 0, got {bad[0]}")
            v = sorted(set(v))
        return v

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"
