"""Service settings: every field can come from a `linr serve` flag or a `LINR_<FIELD>` variable.

Flags win over the environment (they are passed to `Settings(...)` as init values), which is
how pydantic-settings orders its sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from linr.limits import MAX_BULK_ITEMS, MAX_DIM, MAX_QUERY_VECTORS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINR_", extra="forbid")

    # What to serve. INDEX_DIR, else the newest snapshot, else an empty index of `dim`.
    index_dir: Path | None = None
    dim: int | None = Field(default=None, ge=1, le=MAX_DIM, description="Dimension of a new index.")
    metric: Literal["ip", "cosine", "l2"] = Field(default="ip", description="For a new index.")
    quantization: Literal["fp32", "fp16", "int8", "1bit"] = Field(
        default="fp32", description="For a new index."
    )
    # quantization 1bit (docs/onebit.md): codes of a new index, rerank store, its device.
    bits: int | None = Field(
        default=None, ge=64, description="1bit codes per item, a multiple of 64 (default D)."
    )
    rerank: Literal["fp16", "int8", "fp32", "none"] | None = Field(
        default=None, description="1bit rerank store of a new index (default fp16)."
    )
    rerank_device: Literal["auto", "cpu", "cuda"] | None = Field(
        default=None, description="1bit: where the rerank store lives (default: with codes)."
    )
    oversample: int = Field(
        default=10, ge=1, le=1000, description="1bit: candidates per result (request default)."
    )
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="auto (CUDA when present), cpu, cuda, or cuda:N for GPU N.",
    )
    schema_file: Path | None = Field(
        default=None, description="JSON schema file for a new empty index (docs/service.md)."
    )

    host: str = Field(default="127.0.0.1", description="Listen address (0.0.0.0: all).")
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(default=False, description="Log every request (metrics count them).")

    # Live updates (ingest/); the ingester runs only when kafka_bootstrap is set.
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka HOST:PORT; turns the ingester on."
    )
    topic: str = Field(default="linr-items", description="The item topic.")
    group: str | None = Field(default=None, description="Consumer group, for monitoring.")
    partitions: Annotated[list[int] | None, NoDecode] = Field(
        default=None, description="Partitions to consume, e.g. 0,1 (default: all)."
    )
    snapshot_dir: Path | None = Field(
        default=None, description="Start from its newest snapshot; write snapshots there."
    )
    snapshot_every_s: float = Field(default=30.0, gt=0)
    snapshot_every_messages: int = Field(default=100_000, ge=1)
    on_log_reset: Literal["stop", "rebuild"] = Field(
        default="stop",
        description="When the topic the index was built from is gone or recreated: stop "
        "ingesting (/readyz 503 says why; searches go on) or rebuild from the new log.",
    )

    api_key: SecretStr | None = Field(
        default=None, description="Bearer token required on /v1 (prefer LINR_API_KEY)."
    )

    # Micro-batching: a search waits at most `batch_window_ms` for others to share its scan.
    # Under load the window hardly matters (what arrives during a scan is the next batch):
    # benchmarks/bench_service.py, 100k x 128 fp32, 32 clients, 2-core CPU: ~16 queries per
    # scan and 3.5x the requests/s of batching off (794 vs 229), p50 39 ms vs 139 ms.
    batch_window_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest wait for a search batch to fill."
    )
    max_batch_queries: int = Field(
        default=256, ge=1, le=65536, description="Queries per scan (1: batching off)."
    )
    max_queue: int = Field(default=1024, ge=1, description="Pending search requests before 429.")
    # The interpreter's GIL switch interval (Python's default is 5 ms). The search worker
    # re-takes the GIL after every torch operation; while the event loop serializes a large
    # streamed answer, each re-take waited up to the interval, so a small search of ~50
    # operations took 120-450 ms. At 1 ms its p99 beside requests at the cost limit was 39
    # ms against 288 ms at 5 ms (idle 7-9 ms; benchmarks/bench_service_cost.py, BENCHMARKS.md).
    gil_switch_interval_ms: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="sys.setswitchinterval for the serving process (Python's default: 5).",
    )

    # Request limits, checked before any work is done.
    max_body_bytes: int = Field(default=32 << 20, ge=1024, description="413 above this.")
    max_filter_depth: int = Field(default=16, ge=1, le=256, description="and/or/not nesting.")
    max_filter_chars: int = Field(default=8192, ge=16, description="String filter length.")
    max_vectors_per_query: int = Field(
        default=64, ge=1, le=MAX_QUERY_VECTORS, description="Vectors of a multi-embedding query."
    )
    max_items_per_request: int = Field(
        default=1024, ge=1, le=MAX_BULK_ITEMS, description="Items of one bulk upsert."
    )
    # What one search request may cost (service/cost.py). At both defaults, 256 queries of 4
    # vectors at k = 1000 are admitted: ~2 s of scan and ~1 s of JSON over 20,000 x 64 items
    # on the 2-core dev machine, answered in slices so small searches pass between them.
    max_search_cost: int = Field(
        default=1 << 20, ge=1, description="Sum of vectors x k over a request's queries."
    )
    max_response_bytes: int = Field(
        default=16 << 20, ge=1024, description="Estimated answer size of a search request."
    )
    search_slice_ms: float = Field(
        default=10.0,
        gt=0,
        le=10_000,
        description="Scan time a large request gets before queued searches get a turn.",
    )

    @field_validator("partitions", mode="before")
    @classmethod
    def _split_partitions(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            return [int(p) for p in v.split(",") if p.strip()] if v else None
        return v

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # docker-compose's `LINR_API_KEY: ${LINR_API_KEY:-}` yields "" when unset: no auth.
        return None if v == "" else v

    @field_validator("index_dir", "snapshot_dir", "schema_file", "kafka_bootstrap", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _something_to_serve(self) -> Settings:
        if self.index_dir is None and self.snapshot_dir is None and self.dim is None:
            raise ValueError("give INDEX_DIR, --snapshot-dir, or --dim for an empty index")
        return self
