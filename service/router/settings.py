"""Router settings: each field may come from a `linr router` flag or a `LINR_<FIELD>`
variable (LINR_SHARDS: shards separated by ';', replicas of a shard by ',')."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINR_", extra="ignore")

    shards: Annotated[list[list[str]], NoDecode] = Field(
        min_length=1, description="Replica base URLs of each shard."
    )
    host: str = Field(default="127.0.0.1", description="Listen address (0.0.0.0: all).")
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False
    api_key: SecretStr | None = Field(
        default=None, description="Bearer token required on /v1, and sent to the shards."
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka HOST:PORT; writes are produced there."
    )
    topic: str = Field(default="linr-items", description="The item topic.")

    timeout_ms: float = Field(
        default=1000.0, gt=0, le=60_000, description="Default deadline of a request."
    )
    probe_every_s: float = Field(
        default=0.5, gt=0, le=60, description="How often each replica's /readyz is probed."
    )
    probe_timeout_s: float = Field(default=0.5, gt=0, le=60)
    max_body_bytes: int = Field(default=32 << 20, ge=1024, description="413 above this.")
    coalesce: bool = Field(
        default=True,
        description="Send concurrent searches to a shard as one batch request.",
    )
    max_items_per_request: int = Field(
        default=1024, ge=1, le=65536, description="Items of one bulk upsert."
    )
    max_connections: int = Field(
        default=256, ge=1, description="Open connections to the replicas, all together."
    )

    @field_validator("shards", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            v = [s for s in v.split(";") if s.strip()]
        if isinstance(v, list):
            out = []
            for shard in v:
                urls = shard.split(",") if isinstance(shard, str) else shard
                urls = [u.strip().rstrip("/") for u in urls if u.strip()]
                if not urls:
                    raise ValueError("a shard needs at least one replica URL")
                for u in urls:
                    if not u.startswith(("http://", "https://")):
                        raise ValueError(f"replica URL {u!r} does not start with http(s)://")
                out.append(urls)
            return out
        return v

    @field_validator("api_key", "kafka_bootstrap", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v
