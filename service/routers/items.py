"""Item writes and reads: PUT/GET/DELETE /v1/items/{id}, POST /v1/items (bulk upsert).

Every index call runs on the batcher's worker, in arrival order, between search batches.
With Kafka on (--kafka-bootstrap), writes are checked here and produced to the topic instead
(service/writes.py); they answer with their position in the log.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.body import JsonRoute
from service.deps import StateDep, floats, index_error, json_response, py_id
from service.errors import ApiError, invalid
from service.models import (
    ERROR_RESPONSES,
    BulkRequest,
    BulkResponse,
    BulkWriteResponse,
    DeleteResponse,
    ErrorBody,
    ItemBody,
    ItemResponse,
    UpsertResponse,
    WriteResponse,
)
from service.validate import check_id, check_vectors, parse_path_id
from service.writes import KafkaWriter

router = APIRouter(
    prefix="/v1/items", tags=["items"], responses=ERROR_RESPONSES, route_class=JsonRoute
)

# `:path` so that a string id may hold "/" (sent percent-encoded).
_ID_DOC = "An integer id if the index uses integer ids, else a string id."
IdPath = Path(description=_ID_DOC, min_length=1)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such id"}
}


# PUT never answers "no such item" (it creates one); a 404 means the path names no item at
# all (an empty id: /v1/items/).
_NO_ROUTE: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No item path (an empty id)"}
}


_ITEM = re.compile(r"^item (\d+): ")


def _not_found(item_id: int | str) -> ApiError:
    return ApiError(404, "not_found", f"no item with id {item_id!r}")


async def _on_worker(state: StateDep, fn: Any) -> Any:
    _, batcher = state.require()
    try:
        return await batcher.call(fn)
    except Exception as e:
        raise index_error(e) from None


async def _writer(state: StateDep) -> KafkaWriter | None:
    return await run_in_threadpool(state.writer)


async def _check_attributes(state: StateDep, attributes: list[Any], where: Any) -> None:
    """What the index would refuse, refused now (422) rather than dead-lettered later. On a
    thread: it waits for the index's writer lock, which an ingest batch holds."""
    index, _ = state.require()
    try:
        await run_in_threadpool(index.check_attributes, attributes)
    except Exception as e:
        err = index_error(e)
        if isinstance(err, ApiError) and (m := _ITEM.match(err.message)):
            err.message = f"{where(int(m.group(1)))}: {err.message[m.end() :]}"
        raise err from None


def _position(p: int, o: int) -> dict[str, int]:
    return {"partition": p, "offset": o}


@router.put(
    "/{item_id:path}",
    response_model=UpsertResponse | WriteResponse,
    responses=_NO_ROUTE,
    summary="Insert or replace an item",
)
async def put_item(state: StateDep, body: ItemBody, item_id: str = IdPath) -> Response:
    """Without Kafka: written into the index. With Kafka: produced to the topic, answered
    with its `position` once the broker has it; pass it as `after` to a search."""
    index, _ = state.require()
    iid = parse_path_id(item_id, index.id_kind)
    vec = check_vectors([body.vector], index.dim, lambda _: "body.vector")
    writer = await _writer(state)
    if writer is not None:
        from ingest.messages import encode_upsert

        await _check_attributes(state, [body.attributes], lambda _: "body.attributes")
        p, o = await writer.send(*encode_upsert(iid, vec[0], body.attributes, body.version))
        return json_response({"id": iid, "position": _position(p, o)})
    versions = None if body.version is None else [body.version]
    res = await _on_worker(state, lambda: index.upsert([iid], vec, [body.attributes], versions))
    created, applied = bool(res.created[0]), bool(res.applied[0])
    return json_response({"id": iid, "created": created, "applied": applied})


@router.get(
    "/{item_id:path}", response_model=ItemResponse, responses=_NOT_FOUND, summary="Read an item"
)
async def get_item(state: StateDep, item_id: str = IdPath) -> Response:
    index, _ = state.require()
    iid = parse_path_id(item_id, index.id_kind)
    item = await _on_worker(state, lambda: index.get(iid))
    if item is None:
        raise _not_found(iid)
    out = {"id": py_id(item.id), "vector": floats(item.vector), "attributes": item.attributes}
    if item.version is not None:
        out["version"] = item.version
    return json_response(out)


@router.delete(
    "/{item_id:path}", response_model=DeleteResponse, responses=_NOT_FOUND, summary="Delete"
)
async def delete_item(state: StateDep, item_id: str = IdPath) -> Response:
    """With Kafka: a tombstone produced to the topic (404 when the index holds no such item
    now), answered with its `position`."""
    index, _ = state.require()
    iid = parse_path_id(item_id, index.id_kind)
    writer = await _writer(state)
    if writer is not None:
        from ingest.messages import encode_delete

        if not await _on_worker(state, lambda: iid in index):
            raise _not_found(iid)
        p, o = await writer.send(*encode_delete(iid))
        return json_response({"id": iid, "deleted": True, "position": _position(p, o)})
    removed = await _on_worker(state, lambda: index.delete([iid]))
    if not bool(removed[0]):
        raise _not_found(iid)
    return json_response({"id": iid, "deleted": True})


@router.post(
    "", response_model=BulkResponse | BulkWriteResponse, summary="Insert or replace many items"
)
async def bulk_upsert(state: StateDep, body: BulkRequest) -> Response:
    """All or nothing: one bad item rejects the request (422 naming it) and writes nothing."""
    index, _ = state.require()
    items = body.items
    limit = state.settings.max_items_per_request
    if len(items) > limit:
        raise invalid(f"body.items: {len(items)} items; the limit is {limit} per request")
    ids = [check_id(it.id, f"body.items[{i}].id") for i, it in enumerate(items)]
    vecs = check_vectors(
        [it.vector for it in items], index.dim, lambda i: f"body.items[{i}].vector"
    )
    attrs = [it.attributes for it in items]
    writer = await _writer(state)
    if writer is not None:
        from ingest.messages import encode_upsert

        await _check_attributes(state, attrs, lambda i: f"body.items[{i}].attributes")
        sent = await asyncio.gather(
            *(
                writer.send(*encode_upsert(iid, vecs[i], attrs[i], items[i].version))
                for i, iid in enumerate(ids)
            )
        )
        after: dict[str, int] = {}
        for p, o in sent:
            after[str(p)] = max(after.get(str(p), -1), o)
        positions = [_position(p, o) for p, o in sent]
        return json_response({"upserted": len(ids), "positions": positions, "after": after})
    versions = [it.version for it in items] if any(it.version is not None for it in items) else None
    res = await _on_worker(state, lambda: index.upsert(ids, vecs, attrs, versions))
    upserted = int(res.applied.sum())
    created = int(res.created.sum())
    return json_response({"upserted": upserted, "created": created, "ignored": len(ids) - upserted})
