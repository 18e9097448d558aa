"""Benchmark of the service under large requests: small-search latency while requests at the
cost limit run back to back, and the memory the server keeps afterwards.

A real uvicorn serves N random items (fp32) in a child process. A second child process sends
POST /v1/search/batch requests at both default limits (256 queries of 4 vectors at k = 1000:
max_search_cost 1,048,576 vs 1,024,000, max_response_bytes 16 MiB vs an estimated 15.4 MB)
back to back, reading each answer (streamed, ~10 MB). This process sends single small
searches (k = 10), one at a time, first on the idle server (the baseline, same run), then
during the large requests; printed: p50 / p99 of both and their ratio, the large requests'
latency, and the server's RSS at start, at its peak and after the load. A request over the
cost limit is sent first and must get 422 naming max_search_cost.

    python benchmarks/bench_service_cost.py                  # 20,000 x 64, 300 probes
    python benchmarks/bench_service_cost.py --n 100000 --probes 500

The three processes share the machine (on 2 cores the large-request client takes part of a
core), and tests/service/test_cost.py runs a smaller configuration with a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_SEED = 1234
# At the defaults of service/settings.py: 256 x 4 x 1000 = 1,024,000 <= 1,048,576 cost units,
# 256,000 hits x 60 bytes estimated = 15.4 MB <= 16 MiB.
LARGE = {"queries": 256, "vectors": 4, "k": 1000}


def _serve(port: int, n: int, dim: int) -> None:
    """Child process: build the index, serve it until SIGTERM."""
    import uvicorn

    import linr
    from service import Settings, create_app

    rng = np.random.default_rng(_SEED)
    index = linr.Index(dim=dim, metric="ip", quantization="fp32", device="cpu")
    index.upsert(np.arange(n), rng.standard_normal((n, dim), dtype=np.float32))
    app = create_app(Settings(dim=dim), index=index)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _large_body(dim: int, queries: int, vectors: int, k: int) -> bytes:
    rng = np.random.default_rng(_SEED + 1)
    q = rng.standard_normal((queries, vectors, dim), dtype=np.float32).round(4)
    return json.dumps({"queries": [{"vectors": v.tolist(), "k": k} for v in q]}).encode()


def _load(port: int, dim: int, stop: Any, started: Any, done: Any, out: Any) -> None:
    """Child process: large requests back to back until `stop` is set."""
    import httpx

    body = _large_body(dim, **LARGE)
    url = f"http://127.0.0.1:{port}/v1/search/batch"
    lat, sizes, statuses = [], [], []
    with httpx.Client(timeout=120) as c:
        started.set()
        while not stop.is_set():
            t0 = time.perf_counter()
            with c.stream("POST", url, content=body) as r:
                size = sum(len(b) for b in r.iter_bytes())
            lat.append(time.perf_counter() - t0)
            sizes.append(size)
            statuses.append(r.status_code)
            done.value += 1
    out.put({"latencies": lat, "sizes": sizes, "statuses": statuses})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _send(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> tuple[int, bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    header = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line[15:]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-l")
    )
    return int(header[9:12]), await reader.readexactly(length)


async def _probe(
    port: int, bodies: list[bytes], gap_s: float, more: Any = None, limit_s: float = 300.0
) -> np.ndarray:
    """Small searches one at a time (latency of each, seconds); every one must be a 200.
    After the bodies, more (cycling through them) while `more()` is true, up to `limit_s`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    end = time.monotonic() + limit_s
    i = 0
    while i < len(bodies) or (more is not None and more() and time.monotonic() < end):
        b = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        status, resp = await _send(reader, writer, "/v1/search", b)
        out.append(time.perf_counter() - t0)
        if status != 200:
            raise AssertionError(f"small search got {status}: {resp[:200]!r}")
        await asyncio.sleep(gap_s)
    writer.close()
    return np.asarray(out)


async def _wait_ready(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            header = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            if header[9:12] == b"200":
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not get ready")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    n: int = 20_000, dim: int = 64, probes: int = 300, gap_ms: float = 5.0, over: bool = True
) -> dict:
    """Run the whole measurement; returns the numbers (tests/service/test_cost.py). `over`:
    send the request over the cost limit first (off for a build without limits)."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    server = ctx.Process(target=_serve, args=(port, n, dim))
    server.start()
    stop, started, out = ctx.Event(), ctx.Event(), ctx.Queue()
    done = ctx.Value("i", 0)
    loader = ctx.Process(target=_load, args=(port, dim, stop, started, done, out))
    try:
        asyncio.run(_wait_ready(port, 300))
        rng = np.random.default_rng(_SEED + 2)
        small = [
            json.dumps({"vector": v.round(4).tolist(), "k": 10}).encode()
            for v in rng.standard_normal((probes + 20, dim), dtype=np.float32)
        ]
        too_costly = json.loads(_large_body(dim, 1024, 8, 1000))  # 8,192,000 > 1,048,576
        asyncio.run(_probe(port, small[:20], 0.0))  # warm-up
        refused = (0, "not sent")
        if over:
            refused = asyncio.run(_refused(port, json.dumps(too_costly).encode()))
        rss_start = _rss_mb(server.pid or 0)
        idle = asyncio.run(_probe(port, small[20:], gap_ms / 1e3))
        loader.start()
        if not started.wait(120):
            raise RuntimeError("the large-request client did not start")
        time.sleep(0.5)  # the first large request is in the server
        t0 = time.perf_counter()
        # At least `probes` small searches, and on until two large requests have finished.
        loaded = asyncio.run(_probe(port, small[20:], gap_ms / 1e3, lambda: done.value < 2))
        probe_s = time.perf_counter() - t0
        stop.set()
        got = out.get(timeout=300)
        loader.join(60)
        time.sleep(1.0)  # idle: the worker hands freed memory back
        rss_end = _rss_mb(server.pid or 0)
    finally:
        stop.set()
        if loader.is_alive():
            loader.terminate()
        server.terminate()
        server.join(30)
    return {
        "n": n,
        "dim": dim,
        "probes": probes,
        "idle_p50_ms": float(np.percentile(idle, 50) * 1e3),
        "idle_p99_ms": float(np.percentile(idle, 99) * 1e3),
        "loaded_p50_ms": float(np.percentile(loaded, 50) * 1e3),
        "loaded_p99_ms": float(np.percentile(loaded, 99) * 1e3),
        "probe_s": probe_s,
        "large_done": len(got["latencies"]),
        "large_statuses": sorted(set(got["statuses"])),
        "large_median_s": float(np.median(got["latencies"])) if got["latencies"] else 0.0,
        "large_mb": float(np.median(got["sizes"]) / 1e6) if got["sizes"] else 0.0,
        "refused": refused,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
    }


async def _refused(port: int, body: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, resp = await _send(reader, writer, "/v1/search/batch", body)
    writer.close()
    return status, json.loads(resp)["error"]["message"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--probes", type=int, default=300)
    p.add_argument("--gap-ms", type=float, default=5.0, help="pause between small searches")
    p.add_argument(
        "--no-over", action="store_true", help="skip the over-limit request (older builds)"
    )
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    print(
        f"# bench_service_cost: N={args.n} D={args.dim} fp32, large = {LARGE}, "
        f"{args.probes} small searches (k = 10) per phase, {os.cpu_count()} CPUs ({cpu}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    r = measure(args.n, args.dim, args.probes, args.gap_ms, over=not args.no_over)
    print(f"over the limit: {r['refused'][0]} {r['refused'][1]}")
    print(f"{'phase':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'idle':>8} {r['idle_p50_ms']:8.2f} {r['idle_p99_ms']:8.2f}")
    print(f"{'loaded':>8} {r['loaded_p50_ms']:8.2f} {r['loaded_p99_ms']:8.2f}")
    print(
        f"large requests during the probes: {r['large_done']} done, statuses "
        f"{r['large_statuses']}, median {r['large_median_s']:.2f} s, {r['large_mb']:.1f} MB each"
    )
    print(
        f"server RSS: {r['rss_start_mb']:.0f} MB at start, {r['rss_end_mb']:.0f} MB after the "
        "large requests"
    )
    print(f"p99 loaded/idle: {r['loaded_p99_ms'] / r['idle_p99_ms']:.2f}x")


if __name__ == "__main__":
    main()
