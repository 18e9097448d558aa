"""A small Python client for `linr serve` (needs httpx: the `service` extra).

    from linr.client import Client
    with Client("http://127.0.0.1:8080", api_key=None) as c:
        c.upsert(7, vec, {"lang": "en"})
        hits = c.search(vec, k=10, filter='lang == "en"')   # [{"id", "score"}, ...]

Errors come back as `ApiError` carrying the service's status, code and message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx

Id = int | str


class ApiError(Exception):
    """A 4xx/5xx answer: `status` (HTTP), `code` and `message` (the error body of
    docs/service.md)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _list(v: Any) -> Any:
    """numpy arrays and torch tensors to JSON lists, without importing either."""
    return v.tolist() if hasattr(v, "tolist") else v


def _query(
    vector: Any,
    k: int,
    filter: str | Mapping[str, Any] | None,
    include_attributes: bool,
    aggregate: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"k": k, "include_attributes": include_attributes}
    v = _list(vector)
    if aggregate is not None:
        body["vectors"] = v
        body["aggregate"] = aggregate
    else:
        body["vector"] = v
    if filter is not None:
        body["filter"] = filter
    return body


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None, ok404: bool = False) -> Any:
        r = self._http.request(method, path, json=json)
        if r.status_code == 404 and ok404:
            return None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, str(err["code"]), str(err["message"]))
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:500]) from None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    @staticmethod
    def _item_path(item_id: Id) -> str:
        return "/v1/items/" + quote(str(item_id), safe="")

    # -- search --------------------------------------------------------------------------

    def search(
        self,
        vector: Any,
        k: int = 10,
        filter: str | Mapping[str, Any] | None = None,
        *,
        include_attributes: bool = False,
        aggregate: str | None = None,
        oversample: int | None = None,
    ) -> list[dict[str, Any]]:
        """Top-k hits `[{"id", "score"[, "attributes"]}]`. With `aggregate` ("max" or
        "sum"), `vector` is a list of vectors: a multi-embedding query. `oversample`:
        candidates per result of a 1bit index's rerank (the server's default if None)."""
        body = _query(vector, k, filter, include_attributes, aggregate)
        if oversample is not None:
            body["oversample"] = oversample
        results: list[dict[str, Any]] = self._call("POST", "/v1/search", body)["results"]
        return results

    def search_batch(
        self,
        vectors: Iterable[Any],
        k: int = 10,
        filter: str | Mapping[str, Any] | None = None,
        *,
        filters: Sequence[str | Mapping[str, Any] | None] | None = None,
        include_attributes: bool = False,
    ) -> list[list[dict[str, Any]]]:
        """One request for many queries: `filter` for all, or `filters`, one per query."""
        vs = list(_list(vectors))
        fs = list(filters) if filters is not None else [filter] * len(vs)
        if len(fs) != len(vs):
            raise ValueError(f"got {len(fs)} filters for {len(vs)} queries")
        queries = [_query(v, k, f, include_attributes, None) for v, f in zip(vs, fs, strict=True)]
        out = self._call("POST", "/v1/search/batch", {"queries": queries})
        return [r["results"] for r in out["results"]]

    # -- items ---------------------------------------------------------------------------

    def upsert(
        self,
        item_id: Id,
        vector: Any,
        attributes: Mapping[str, Any] | None = None,
        version: int | None = None,
    ) -> dict[str, Any]:
        """`{"id", "created", "applied"}`."""
        body: dict[str, Any] = {"vector": _list(vector), "attributes": attributes}
        if version is not None:
            body["version"] = version
        result: dict[str, Any] = self._call("PUT", self._item_path(item_id), body)
        return result

    def upsert_many(
        self,
        ids: Sequence[Id],
        vectors: Any,
        attributes: Sequence[Mapping[str, Any] | None] | None = None,
        versions: Sequence[int | None] | None = None,
    ) -> dict[str, Any]:
        """Bulk upsert, all or nothing: `{"upserted", "created", "ignored"}`."""
        vs = _list(vectors)
        items: list[dict[str, Any]] = []
        for i, item_id in enumerate(_list(ids)):
            item: dict[str, Any] = {"id": item_id, "vector": vs[i]}
            if attributes is not None and attributes[i] is not None:
                item["attributes"] = attributes[i]
            if versions is not None and versions[i] is not None:
                item["version"] = versions[i]
            items.append(item)
        result: dict[str, Any] = self._call("POST", "/v1/items", {"items": items})
        return result

    def get(self, item_id: Id) -> dict[str, Any] | None:
        """`{"id", "vector", "attributes"}`, or None when there is no such item."""
        result: dict[str, Any] | None = self._call("GET", self._item_path(item_id), ok404=True)
        return result

    def delete(self, item_id: Id) -> bool:
        """True if the item existed and was removed."""
        return self._call("DELETE", self._item_path(item_id), ok404=True) is not None

    # -- service -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/stats")
        return result

    def healthy(self) -> bool:
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> bool:
        return self._http.get("/readyz").status_code == 200

    def metrics(self) -> str:
        text: str = self._call("GET", "/metrics")
        return text
