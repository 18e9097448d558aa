"""Readiness transitions, loading (INDEX_DIR, snapshots, empty), the ingester's place in
readiness and stats, the final snapshot on shutdown, and the metrics."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from svc_helpers import app_client, error_of, live_server, wait_until

import linr
from service import state as state_mod


def test_readiness_goes_from_503_to_200_once_the_index_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = threading.Event()
    real_load = state_mod.load_index

    def slow_load(settings: Any) -> Any:
        gate.wait(30)
        return real_load(settings)

    monkeypatch.setattr(state_mod, "load_index", slow_load)
    with live_server(dim=3) as srv:
        assert httpx.get(srv.url + "/healthz").json() == {"status": "ok"}
        err = error_of(httpx.get(srv.url + "/readyz"), 503)
        assert err["code"] == "not_ready" and "loading" in err["message"]
        error_of(httpx.post(srv.url + "/v1/search", json={"vector": [1, 2, 3]}), 503)
        assert "linr_ready 0.0" in httpx.get(srv.url + "/metrics").text
        gate.set()
        srv.wait_ready()
        assert httpx.get(srv.url + "/readyz").json() == {"status": "ready"}
        r = httpx.post(srv.url + "/v1/search", json={"vector": [1, 2, 3]})
        assert r.status_code == 200 and r.json()["results"] == []
        assert "linr_ready 1.0" in httpx.get(srv.url + "/metrics").text


def test_a_failed_load_stays_not_ready_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with app_client(index_dir=tmp_path) as c:
        wait_until(lambda: "failed" in c.get("/readyz").text, what="load failure")
        err = error_of(c.get("/readyz"), 503)
        assert "not valid JSON" in err["message"]
        assert "not valid JSON" in error_of(c.get("/v1/stats"), 503)["message"]
        assert c.get("/healthz").status_code == 200


def test_loads_index_dir(tmp_path: Path) -> None:
    idx = linr.Index(dim=3, metric="l2", device="cpu")
    idx.upsert(["a", "b"], np.eye(2, 3, dtype=np.float32), [{"lang": "en"}, {"lang": "fr"}])
    idx.save(tmp_path / "idx")
    with app_client(index_dir=tmp_path / "idx") as c:
        wait_until(lambda: c.get("/readyz").status_code == 200, what="ready")
        s = c.get("/v1/stats").json()
        assert (s["count"], s["metric"], s["dim"]) == (2, "l2", 3)
        hits = c.post("/v1/search", json={"vector": [1, 0, 0], "filter": 'lang == "fr"'}).json()
        assert [h["id"] for h in hits["results"]] == ["b"]


def test_empty_index_from_settings_with_a_schema(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"ts": "float"}')
    with app_client(dim=2, metric="cosine", quantization="fp16", schema_file=schema) as c:
        wait_until(lambda: c.get("/readyz").status_code == 200, what="ready")
        s = c.get("/v1/stats").json()
        assert (s["count"], s["metric"], s["quantization"]) == (0, "cosine", "fp16")
        assert s["schema"] == {"ts": "float"}
        # The schema fixes the kind up front: an int goes into the float field ...
        assert c.put("/v1/items/1", json={"vector": [1, 0], "attributes": {"ts": 3}}).is_success
        # ... a string does not.
        bad = c.put("/v1/items/2", json={"vector": [1, 0], "attributes": {"ts": "x"}})
        assert "ts" in error_of(bad, 422)["message"]


def test_final_snapshot_on_shutdown_and_restart_from_it(tmp_path: Path) -> None:
    snaps = pytest.importorskip("ingest.snapshots")
    with app_client(dim=2, snapshot_dir=tmp_path) as c:
        wait_until(lambda: c.get("/readyz").status_code == 200, what="ready")
        c.put("/v1/items/7", json={"vector": [1, 2], "attributes": {"lang": "en"}})
        assert snaps.list_snapshots(tmp_path) == []
    assert len(snaps.list_snapshots(tmp_path)) == 1
    with app_client(snapshot_dir=tmp_path) as c:  # no --dim needed: the snapshot has it
        wait_until(lambda: c.get("/readyz").status_code == 200, what="ready")
        assert c.get("/v1/items/7").json() == {
            "id": 7,
            "vector": [1.0, 2.0],
            "attributes": {"lang": "en"},
        }
    with app_client(snapshot_dir=tmp_path / "empty") as c:
        wait_until(lambda: "failed" in c.get("/readyz").text, what="load failure")
        assert "--dim" in c.get("/readyz").json()["error"]["message"]


class FakeIngester:
    """Stands in for ingest.Ingester (its interface: ready, stopped, stats(), stop()); the
    real one needs a broker and is exercised end to end in tests/ingest."""

    def __init__(self) -> None:
        self.ready = False
        self.stopped: str | None = None  # why ingestion stopped (a log reset)
        self.stopped_with: bool | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "applied": 12,
            "ignored_stale": 1,
            "dead_lettered": 2,
            "errors": 0,
            "lag": 5,
            "freshness_ms": {"p50": 3.5, "p99": 40.0},
            "offsets": {"0": 17},
        }

    def stop(self, final_snapshot: bool = True) -> None:
        self.stopped_with = final_snapshot


def test_with_kafka_readiness_waits_for_the_ingester(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIngester()
    seen: list[Any] = []

    def start(self: Any, index: Any) -> FakeIngester:
        seen.append((index, self.settings.kafka_bootstrap, self.settings.topic))
        return fake

    monkeypatch.setattr(state_mod.AppState, "_start_ingester", start)
    with app_client(dim=2, kafka_bootstrap="127.0.0.1:9", topic="t") as c:
        wait_until(lambda: seen != [], what="ingester started")
        err = error_of(c.get("/readyz"), 503)
        assert "ingester" in err["message"]
        assert c.post("/v1/search", json={"vector": [1, 0]}).status_code == 200  # serves
        fake.ready = True
        assert c.get("/readyz").status_code == 200
        assert c.get("/v1/stats").json()["ingest"] == fake.stats()
        text = c.get("/metrics").text
        assert "linr_ingest_lag_messages 5.0" in text
        assert 'linr_ingest_freshness_ms{quantile="p99"} 40.0' in text
        assert "linr_ingest_dead_lettered 2.0" in text
    assert seen[0][1:] == ("127.0.0.1:9", "t")
    assert fake.stopped_with is True


def test_metrics_count_requests_batches_and_the_index(rng: np.random.Generator) -> None:
    idx = linr.Index(dim=2, device="cpu")
    with app_client(idx) as c:
        c.put("/v1/items/1", json={"vector": [1, 0]})
        for _ in range(3):
            c.post("/v1/search", json={"vector": [1, 1]})
        c.post("/v1/search", json={"vector": [1]})
        c.get("/v1/items/99")
        text = c.get("/metrics").text
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    search = 'linr_http_requests_total{endpoint="/v1/search",method="POST",status="200"}'
    assert lines[search] == "3.0"
    assert lines[search.replace("200", "422")] == "1.0"
    item = 'linr_http_requests_total{endpoint="/v1/items/{item_id:path}",method="GET",status="404"}'
    assert lines[item] == "1.0"  # labelled by route template, not by id
    hist = (
        'linr_http_request_duration_seconds_count{endpoint="/v1/search",method="POST",status="200"}'
    )
    assert lines[hist] == "3.0"
    assert float(lines["linr_search_batch_queries_count"]) >= 1
    assert float(lines["linr_search_batch_queries_sum"]) == 3.0
    assert lines["linr_index_items"] == "1.0"
    assert float(lines["linr_index_memory_bytes"]) == idx.stats()["memory_bytes"]
    assert lines["linr_search_queue_depth"] == "0.0"
