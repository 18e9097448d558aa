"""What one search request may cost: refused before any scan when over a limit (422 naming
it), streamed when its answer is large, and no stall of small searches while it runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from svc_helpers import app_client, assert_hits, build_index, error_of, exact, random_items


def _counting(index: Any) -> list[int]:
    """Count the index's scans (a refused request must cause none)."""
    calls: list[int] = []
    search = index.search

    def counted(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return search(*a, **kw)

    index.search = counted
    return calls


@pytest.mark.parametrize(
    ("body", "settings", "code", "limit"),
    [
        # 3 queries x 2 vectors x k = 10 = 60 > 59
        (
            {"queries": [{"vectors": [[1.0, 0.0]] * 2, "k": 10}] * 3},
            {"max_search_cost": 59},
            "over_cost_limit",
            "max_search_cost is 59",
        ),
        # 40 queries x k = 1000 hits x 60 bytes = 2.4 MB > 1 MiB
        (
            {"queries": [{"vector": [1.0, 0.0], "k": 1000}] * 40},
            {"max_response_bytes": 1 << 20},
            "response_too_large",
            "max_response_bytes is 1048576",
        ),
    ],
)
def test_a_request_over_a_limit_is_refused_before_any_scan(
    rng: np.random.Generator, body: dict[str, Any], settings: dict[str, Any], code: str, limit: str
) -> None:
    index = build_index(random_items(rng, 30, 2), 2)
    calls = _counting(index)
    with app_client(index, **settings) as c:
        err = error_of(c.post("/v1/search/batch", json=body), 422)
        assert err["code"] == code and limit in err["message"], err
        assert calls == []
        one = body["queries"][0]
        single = c.post("/v1/search", json=one)
        if code == "over_cost_limit":  # one query alone is under the limit: answered
            assert single.status_code == 200 and calls == [1]


def test_defaults_refuse_the_request_that_stalled_the_service(rng: np.random.Generator) -> None:
    """1,024 queries x 64 vectors at k = 1000 (65M): 7.2 s over 20,000 items before."""
    index = build_index(random_items(rng, 10, 2), 2)
    calls = _counting(index)
    body = {"queries": [{"vectors": [[0.5, 0.5]] * 64, "k": 1000}] * 1024}
    with app_client(index) as c:
        err = error_of(c.post("/v1/search/batch", json=body), 422)
    assert err["code"] == "over_cost_limit" and "65536000" in err["message"], err
    assert calls == []


def test_a_large_answer_is_streamed_and_equals_exact_search(rng: np.random.Generator) -> None:
    dim = 5
    items = random_items(rng, 1200, dim)
    q = rng.standard_normal((30, dim)).astype(np.float32)  # 20 x 1000 + 10 x ~300 hits
    f = [None, 'lang == "en"', None]
    with app_client(build_index(items, dim)) as c:
        body = {
            "queries": [
                {"vector": v.tolist(), "k": 1000, "filter": f[i % 3]} for i, v in enumerate(q)
            ]
        }
        r = c.post("/v1/search/batch", json=body)
        assert r.status_code == 200, r.text[:300]
        assert "content-length" not in r.headers  # streamed (chunked)
        got = r.json()
    assert set(got) == {"results", "took_ms"} and len(got["results"]) == len(q)
    for i, answer in enumerate(got["results"]):
        assert_hits(answer["results"], *exact(items, q[i], 1000, filter=f[i % 3]))
        assert answer["count"] == len(answer["results"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_small_searches_are_not_stuck_behind_requests_at_the_cost_limit() -> None:
    """A real uvicorn (child process), large requests back to back from a second process,
    small searches from this one. Small searches wait for a slice, not for a whole large
    request: under load their p50 stays within 3x the idle p50 and their p99 within 10x the
    idle p99 (quiet 2-core dev machine: 4.7-5.4x with the service's 1 ms GIL switch
    interval, ~30x at Python's 5 ms; BENCHMARKS.md).
    Before slicing and streaming: p50 3,359 ms and p99 5,096 ms against 7.0 / 18.1 ms idle,
    which fails both. One more try when a run misses: the CI machine may be shared."""
    from benchmarks import bench_service_cost  # by name: its child processes import it

    for attempt in range(2):
        r = bench_service_cost.measure(n=20_000, dim=64, probes=200)
        print(attempt, r)
        status, message = r["refused"]
        assert status == 422 and "max_search_cost" in message
        assert r["large_done"] >= 1 and r["large_statuses"] == [200], r
        # Freed memory went back to the OS once idle: the build before kept 126 MB more.
        assert r["rss_end_mb"] <= r["rss_start_mb"] + 50, r
        if r["loaded_p50_ms"] < 3 * r["idle_p50_ms"] and r["loaded_p99_ms"] < 10 * r["idle_p99_ms"]:
            return
    raise AssertionError(
        f"small searches under load: p50 {r['loaded_p50_ms']:.1f} ms (idle "
        f"{r['idle_p50_ms']:.1f}), p99 {r['loaded_p99_ms']:.1f} ms (idle {r['idle_p99_ms']:.1f})"
    )
