"""/v1/items on the router: writes produced to Kafka (service.router.writes), reads sent to
the shard that reads the id's partition (to every shard when that is not known)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Path
from fastapi.responses import Response

from ingest.messages import encode_delete, encode_upsert, id_text
from service.deps import json_response
from service.errors import ApiError, invalid
from service.models import BulkRequest, ItemBody
from service.router.fanout import Answer
from service.router.models import ROUTER_ERRORS
from service.router.search import RouterDep
from service.router.state import RouterState, passed_on, unavailable
from service.router.writes import KafkaWriter, partition_of
from service.validate import check_id, check_vectors, parse_path_id

router = APIRouter(prefix="/v1/items", tags=["items"], responses=ROUTER_ERRORS)
IdPath = Path(description="An integer id if the index uses integer ids, else a string id.")


def _writer(state: RouterState) -> KafkaWriter:
    if state.writer is None:
        raise ApiError(
            405, "method_not_allowed", "this router has no --kafka-bootstrap: it takes no writes"
        )
    return state.writer


def _index_figure(state: RouterState, key: str) -> Any:
    value = state.stat(key)
    if value is None and key == "dim":
        raise ApiError(503, "not_ready", "no shard has reported its index yet")
    return value


async def _read(state: RouterState, iid: int | str) -> Answer:
    """GET /v1/items/{id} on the owning shard, or on every shard (the first that has it)."""
    path = "/v1/items/" + quote(str(iid), safe="")
    deadline = state.deadline(None)
    shards = state.shards
    if state.writer is not None:
        n = await asyncio.to_thread(state.writer.partitions)
        owner = state.owner(partition_of(id_text(iid), n))
        shards = [owner] if owner is not None else shards
    answers = await asyncio.gather(*(state.ask(s, "GET", path, None, deadline) for s in shards))
    for a in answers:
        if a.ok:
            return a
    for a in answers:
        if a.status is not None and a.status != 404:
            raise passed_on(a)
    if any(a.status is None for a in answers):
        raise unavailable(list(answers))
    return answers[0]


@router.get("/{item_id:path}", summary="Read an item (from the shard that holds it)")
async def get_item(state: RouterDep, item_id: str = IdPath) -> Response:
    a = await _read(state, parse_path_id(item_id, state.stat("id_kind")))
    if not a.ok:
        raise passed_on(a)
    return json_response(a.body)


@router.put("/{item_id:path}", summary="Insert or replace an item (through Kafka)")
async def put_item(state: RouterDep, body: ItemBody, item_id: str = IdPath) -> Response:
    """Produced to the item topic; answers with the record's position once the broker has
    it. Pass it as `after` to a search to see the write."""
    writer = _writer(state)
    iid = parse_path_id(item_id, _index_figure(state, "id_kind"))
    vec = check_vectors([body.vector], _index_figure(state, "dim"), lambda _: "body.vector")
    key, value = encode_upsert(iid, vec[0], body.attributes, body.version)
    partition, offset = await writer.send(key, value)
    return json_response({"id": iid, "position": {"partition": partition, "offset": offset}})


@router.delete("/{item_id:path}", summary="Delete an item (through Kafka)")
async def delete_item(state: RouterDep, item_id: str = IdPath) -> Response:
    writer = _writer(state)
    iid = parse_path_id(item_id, _index_figure(state, "id_kind"))
    a = await _read(state, iid)  # 404 when no shard has it
    if not a.ok:
        raise passed_on(a)
    partition, offset = await writer.send(*encode_delete(iid))
    pos = {"partition": partition, "offset": offset}
    return json_response({"id": iid, "deleted": True, "position": pos})


@router.post("", summary="Insert or replace many items (through Kafka)")
async def bulk_upsert(state: RouterDep, body: BulkRequest) -> Response:
    """All checked first (422 naming the item, nothing produced), then produced; `after`
    is the highest offset per partition, ready to pass to a search."""
    writer = _writer(state)
    items = body.items
    limit = state.settings.max_items_per_request
    if len(items) > limit:
        raise invalid(f"body.items: {len(items)} items; the limit is {limit} per request")
    ids = [check_id(it.id, f"body.items[{i}].id") for i, it in enumerate(items)]
    dim = _index_figure(state, "dim")
    vecs = check_vectors([it.vector for it in items], dim, lambda i: f"body.items[{i}].vector")
    msgs = [
        encode_upsert(iid, vecs[i], it.attributes, it.version)
        for i, (iid, it) in enumerate(zip(ids, items))
    ]
    positions = await asyncio.gather(*(writer.send(k, v) for k, v in msgs))
    after: dict[str, int] = {}
    for p, o in positions:
        after[str(p)] = max(after.get(str(p), -1), o)
    return json_response(
        {
            "upserted": len(ids),
            "positions": [{"partition": p, "offset": o} for p, o in positions],
            "after": after,
        }
    )
