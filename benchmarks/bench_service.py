"""Benchmark of the HTTP service: throughput and latency with micro-batching on vs off.

A real uvicorn serves an index of N random items (D = 128, fp32) in a child process; this
process is the load: C concurrent keep-alive connections over loopback, each sending
single-vector POST /v1/search requests (k = 10) back to back, through a minimal asyncio
HTTP/1.1 client (an httpx client costs more CPU per request than the server does, and on 2
cores it would measure itself). Both configurations run in the same invocation, each on a
fresh server: "off" scans every request on its own (max_batch_queries = 1), "on" gathers
concurrent requests into one scan (batch_window_ms, default 2). A sample of answers is
checked against linr.knn before timing. Printed per configuration: requests/s, p50 / p99
latency, mean queries per scan (from /metrics); then the on/off ratio.

    python benchmarks/bench_service.py                      # 100k x 128, 32 clients, 10 s
    python benchmarks/bench_service.py --n 20000 --seconds 3 --clients 8   # quick look

The client and the server share the machine: on a 2-core box the client takes about a
core, so these are numbers for the service on the remaining one, under a real HTTP load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import pct  # noqa: E402

from linr.testing.broker import free_port  # noqa: E402

_SEED = 1234
_QUERY_POOL = 512  # distinct request bodies, prebuilt so the client does no JSON work


def make_data(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    q = rng.standard_normal((_QUERY_POOL, dim), dtype=np.float32)
    return x, q


def _serve(port: int, n: int, dim: int, settings: dict[str, Any], threads: int) -> None:
    """Child process: build the index, serve it until SIGTERM."""
    import torch
    import uvicorn

    import linr
    from service import Settings, create_app

    if threads:
        torch.set_num_threads(threads)
    x, _ = make_data(n, dim)
    index = linr.Index(dim=dim, metric="ip", quantization="fp32", device="cpu")
    index.upsert(np.arange(n), x)
    app = create_app(Settings(dim=dim, **settings), index=index)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, bytes]:
    writer.write(head + body)
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    length = 0
    for line in header.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    header = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line[15:]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-l")
    )
    body = await reader.readexactly(length)
    writer.close()
    return int(header[9:12]), body


async def _wait_ready(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if (await _get(port, "/readyz"))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not get ready")


async def _check_answers(port: int, x: np.ndarray, q: np.ndarray, k: int) -> None:
    """A sample of answers equals exact search (linr.knn) before anything is timed."""
    import linr

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _, want = linr.knn(q[:16], x, k)
    for i in range(16):
        body = json.dumps({"vector": q[i].tolist(), "k": k}).encode()
        status, resp = await _request(reader, writer, _head("/v1/search", len(body)), body)
        got = [h["id"] for h in json.loads(resp)["results"]]
        if status != 200 or got != want[i].tolist():
            raise AssertionError(f"query {i}: status {status}, ids {got} != {want[i].tolist()}")
    writer.close()


async def _load(
    port: int, bodies: list[bytes], clients: int, warmup: float, seconds: float
) -> tuple[int, int, np.ndarray]:
    heads = [_head("/v1/search", len(b)) for b in bodies]
    latencies: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_measure = t_start + warmup
    t_end = t_measure + seconds

    async def client(c: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = c * 7919
        while True:
            j = i % len(bodies)
            i += 1
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            status, _ = await _request(reader, writer, heads[j], bodies[j])
            t1 = time.perf_counter()
            if t0 >= t_measure:
                if status == 200:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
        writer.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return len(latencies), errors, np.asarray(latencies)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def run_config(
    name: str, settings: dict[str, Any], args: argparse.Namespace, x: np.ndarray, q: np.ndarray
) -> dict[str, Any]:
    port = free_port()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(port, args.n, args.dim, settings, args.threads))
    proc.start()
    try:
        asyncio.run(_wait_ready(port, 300))
        asyncio.run(_check_answers(port, x, q, args.k))
        bodies = [json.dumps({"vector": v.tolist(), "k": args.k}).encode() for v in q]
        n, errors, lat = asyncio.run(_load(port, bodies, args.clients, args.warmup, args.seconds))
        metrics = asyncio.run(_get(port, "/metrics"))[1].decode()
    finally:
        proc.terminate()
        proc.join(30)
    scans = _metric(metrics, "linr_search_batch_queries_count")
    queries = _metric(metrics, "linr_search_batch_queries_sum")
    ms = lat * 1e3
    return {
        "config": name,
        "rps": n / args.seconds,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "errors": errors,
        "queries_per_scan": queries / scans if scans else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0, help="measured time per config")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--window-ms", type=float, default=2.0, help="batch_window_ms when on")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads in the server (0: torch's default)"
    )
    args = p.parse_args()

    x, q = make_data(args.n, args.dim)
    cpu = platform.processor() or platform.machine()
    print(
        f"# bench_service: N={args.n} D={args.dim} fp32 k={args.k} clients={args.clients} "
        f"{args.seconds:.0f} s per config, {os.cpu_count()} CPUs ({cpu}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    configs = [
        ("off", {"max_batch_queries": 1, "batch_window_ms": 0.0}),
        ("on", {"batch_window_ms": args.window_ms}),
    ]
    rows = [run_config(name, s, args, x, q) for name, s in configs]
    print(f"{'batching':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'q/scan':>7} {'errors':>6}")
    for r in rows:
        print(
            f"{r['config']:>9} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['queries_per_scan']:7.1f} {r['errors']:6d}"
        )
    print(f"throughput on/off: {rows[1]['rps'] / rows[0]['rps']:.2f}x")


if __name__ == "__main__":
    main()
