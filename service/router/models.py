"""Request bodies of the router: the service's (service.models), plus the router's own
fields. Fields the router does not know are passed on to the shards, which check them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from linr.limits import MAX_BATCH_QUERIES
from service.models import ERROR_RESPONSES, ErrorBody, SearchRequest

TimeoutMs = Annotated[float, Field(gt=0, le=60_000)]
Offset = Annotated[int, Strict(), Field(ge=0)]

# Fields the router reads and does not pass on.
ROUTER_FIELDS = {"timeout_ms", "allow_partial"}


class RouterSearchRequest(SearchRequest):
    model_config = ConfigDict(extra="allow")

    timeout_ms: TimeoutMs | None = Field(
        default=None, description="Deadline of the request (default: the router's, 1000)."
    )
    allow_partial: Annotated[bool, Strict()] = Field(
        default=False,
        description='With shards down, answer from the others with "partial": true.',
    )
    after: dict[str, Offset] | None = Field(
        default=None,
        description="Run once the shards have applied these offsets ({partition: offset}).",
    )


class RouterBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: Annotated[list[RouterSearchRequest], Field(min_length=1, max_length=MAX_BATCH_QUERIES)]
    timeout_ms: TimeoutMs | None = None
    allow_partial: Annotated[bool, Strict()] = False


ROUTER_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    503: {"model": ErrorBody, "description": "No replica of a shard answered"},
}
