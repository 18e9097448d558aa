"""Request and response bodies (docs/service.md). Static limits live here; limits that depend
on the index (the dimension) or on settings are checked by `service.validate` before any work.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from linr.limits import MAX_BATCH_QUERIES, MAX_BULK_ITEMS, MAX_DIM, MAX_K

# JSON accepts `NaN` and `Infinity` literals; docs/service.md forbids them in vectors and values.
Finite = Annotated[float, Strict(), AllowInfNan(False)]
# Vectors are stored as float32: the schema states its range (the dimension is put in by
# service.app once the index is known).
_F32_MAX = 3.4028234663852886e38


def _fits_float32(v: float) -> float:
    if abs(v) > _F32_MAX:
        raise ValueError(f"{v!r} does not fit in float32")
    return v


VectorValue = Annotated[
    Finite,
    AfterValidator(_fits_float32),
    Field(json_schema_extra={"minimum": -_F32_MAX, "maximum": _F32_MAX}),
]
Vector = Annotated[list[VectorValue], Field(min_length=1, max_length=MAX_DIM)]
_INT63 = 2**63 - 1
# The schema states the bound exactly (pydantic would print it as a rounded float).
_INT63_SCHEMA = WithJsonSchema({"type": "integer", "minimum": 0, "maximum": _INT63})


def _exact_integral(v: Any) -> Any:
    # 451.0 is the integer 451 in JSON (and JSON Schema); above 2^53 a float may already
    # have lost digits of the id or version it stood for, so it stays a float (refused).
    if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:
        return int(v)
    return v


IntId = Annotated[
    int, Strict(), Field(ge=0, le=_INT63), _INT63_SCHEMA, BeforeValidator(_exact_integral)
]
# 1 to 256 UTF-8 bytes: at most 256 characters here, the byte count in `validate.check_id`.
StrId = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)]
ItemId = IntId | StrId
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")]
AttrValue = (
    Annotated[str, Strict()]
    | list[Annotated[str, Strict()]]
    | Annotated[bool, Strict()]
    | Annotated[int, Strict()]
    | Finite
)
# null is taken here so that the index's refusal names the field (linr/attributes/prepare.py).
Attributes = Annotated[
    dict[FieldName, AttrValue | None], Field(json_schema_extra={"additionalProperties": False})
]
Filter = Annotated[str, Field(min_length=1)] | dict[str, Any]


def _integral(v: Any) -> Any:
    # JSON has one number type: 10.0 is the number 10. (Not for ids and versions, which may
    # exceed 2^53, where a float has already lost digits.)
    return int(v) if isinstance(v, float) and v.is_integer() else v


K = Annotated[int, Strict(), Field(ge=1, le=MAX_K), BeforeValidator(_integral)]
Version = Annotated[
    int, Strict(), Field(ge=0, le=_INT63), _INT63_SCHEMA, BeforeValidator(_exact_integral)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Read your writes (service/writes.py): partition (decimal text) -> offset of a record.
After = Annotated[
    dict[str, Annotated[int, Strict(), Field(ge=0, le=_INT63)]],
    Field(max_length=65536, examples=[{"0": 41}]),
]
WaitMs = Annotated[int, Strict(), Field(ge=0, le=10_000), BeforeValidator(_integral)]


class _AfterFields(BaseModel):
    after: After | SkipJsonSchema[None] = Field(
        default=None,
        description="Search once the index has applied these records ({partition: offset}, "
        "as a write answered); 504 not_caught_up after wait_ms.",
    )
    wait_ms: WaitMs = Field(default=1000, description="Longest wait for `after`, in ms.")

    @model_validator(mode="before")
    @classmethod
    def _no_null_after(cls, data: Any) -> Any:
        # As the schema says: left out, not null.
        if isinstance(data, dict) and "after" in data and data["after"] is None:
            raise ValueError("'after' is null; leave it out instead")
        return data


class SearchRequest(_Body, _AfterFields):
    # Exactly one of vector / vectors; `aggregate` only with `vectors`. Said in the schema
    # too (oneOf), so clients and fuzzers know it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["vector"],
                    "not": {"anyOf": [{"required": ["vectors"]}, {"required": ["aggregate"]}]},
                },
                {"required": ["vectors"], "not": {"required": ["vector"]}},
            ]
        }
    )

    # null is accepted as "left out", but not advertised: the oneOf above is the documented shape.
    vector: Vector | SkipJsonSchema[None] = Field(
        default=None, description="One query vector of the index's D."
    )
    vectors: (
        Annotated[list[Vector], Field(min_length=1, max_length=4096)] | SkipJsonSchema[None]
    ) = Field(default=None, description="Multi-embedding query: items scored by max/sum.")
    aggregate: Literal["max", "sum"] | SkipJsonSchema[None] = Field(
        default=None, description="How `vectors` scores combine (default max)."
    )
    k: K = 10
    filter: Filter | None = Field(
        default=None,
        description="Filter (docs/filters.md), JSON or string form.",
        examples=['lang == "en"'],
    )
    include_attributes: Annotated[bool, Strict()] = False
    oversample: Annotated[int, Strict(), Field(ge=1, le=1000)] | SkipJsonSchema[None] = Field(
        default=None,
        description="quantization 1bit: candidates per result for the exact rerank "
        "(default: the server's --oversample); other indexes are exact and ignore it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # As the schema says: these are left out, not null.
        if isinstance(data, dict):
            for key in ("vector", "vectors", "aggregate", "oversample"):
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' is null; leave it out instead")
        return data

    @model_validator(mode="after")
    def _one_query_form(self) -> SearchRequest:
        if (self.vector is None) == (self.vectors is None):
            raise ValueError("give exactly one of 'vector' or 'vectors'")
        if self.aggregate is not None and self.vectors is None:
            raise ValueError("'aggregate' applies only to 'vectors'")
        return self


class SearchHit(BaseModel):
    id: int | str
    score: float | None = Field(description="Higher is better; null only if not finite.")
    attributes: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    results: list[SearchHit]
    count: int
    took_ms: float


class BatchSearchRequest(_Body, _AfterFields):
    queries: Annotated[list[SearchRequest], Field(min_length=1, max_length=MAX_BATCH_QUERIES)]


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]
    took_ms: float


class ItemBody(_Body):
    vector: Vector
    attributes: Attributes | None = None
    version: Version | None = Field(
        default=None, description="Optional; an update older than the item's version is ignored."
    )


class BulkItem(ItemBody):
    id: ItemId


class BulkRequest(_Body):
    items: Annotated[list[BulkItem], Field(min_length=1, max_length=MAX_BULK_ITEMS)]


class Position(BaseModel):
    partition: int
    offset: int


class UpsertResponse(BaseModel):
    id: int | str
    created: bool
    applied: bool = Field(description="False when the version was stale and the update ignored.")


class BulkResponse(BaseModel):
    upserted: int = Field(description="Items written.")
    created: int = Field(description="Of those, ids that were new.")
    ignored: int = Field(description="Stale versions, and earlier duplicates of an id.")


class ItemResponse(BaseModel):
    id: int | str
    vector: list[float | None]
    attributes: dict[str, Any]


class DeleteResponse(BaseModel):
    id: int | str
    deleted: bool
    position: Position | None = Field(default=None, description="With Kafka: the tombstone's.")


class WriteResponse(BaseModel):
    """With Kafka: the write is in the log, at `position`."""

    id: int | str
    position: Position


class BulkWriteResponse(BaseModel):
    upserted: int
    positions: list[Position]
    after: dict[str, int] = Field(description="The highest offset per partition: for `after`.")


class StatsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    count: int
    capacity: int
    dim: int
    metric: str
    quantization: str
    device: str
    memory_bytes: int
    ingest: dict[str, Any] | None


class Status(BaseModel):
    status: str
    detail: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# Documented on every /v1 route so the OpenAPI spec lists the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    413: {"model": ErrorBody, "description": "Request body over the size limit"},
    422: {"model": ErrorBody, "description": "Invalid input, naming the field"},
    429: {"model": ErrorBody, "description": "Search queue full; retry later"},
    503: {"model": ErrorBody, "description": "Index not loaded yet"},
}
