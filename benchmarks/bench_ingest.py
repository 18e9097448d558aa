"""Live ingestion from Kafka into the index, against a local broker.

    python benchmarks/bench_ingest.py                  # starts a local tansu broker
    python benchmarks/bench_ingest.py --bootstrap kafka:9092
    python benchmarks/bench_ingest.py --quick          # small sizes, a smoke run

1. Ingest rate: a topic preloaded with N upserts (D=128, vector_b64, two small attributes)
   is read into an empty index, from start to caught up; the median of --repeats runs after
   a warm-up. The same with the topic's batches lz4-compressed (as Java and librdkafka
   producers are often set up), and for JSON-list vectors. Baseline in the same run:
   kafka-python alone reading the same topic (poll only), the ceiling the client sets.
2. Freshness and search latency: an index of --search-n items serves single-vector k=10
   queries at --qps: on a quiet machine; while a separate process streams --stream-rate
   upserts/s to a topic nobody reads (the load of the producer and the broker, which share
   this machine's 2 cores here but not in production); and while the same stream goes to
   the topic the ingester applies. The last two alternate --rounds times. Freshness
   (produce timestamp -> applied, hence searchable) is reported by the ingester for every
   message, and measured end to end by a probe that produces a marker item every 100 ms
   and polls the index until it is there. The ratio last: search p99 with / without
   ingestion (consumed / not consumed), pooled and per round. By default the stream
   replaces random existing items (fresh vectors each phase), so every phase searches the
   same number of items; `--stream-ids insert` adds new ones instead, and the index grows by
   --stream-rate x --stream-s items per phase while it is measured.

Rows are appended to benchmarks/results/ingest.csv.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _harness import append_rows, pct  # noqa: E402

import linr  # noqa: E402
from ingest import Ingester, IngestSettings  # noqa: E402
from ingest.messages import encode_upsert  # noqa: E402
from ingest.topics import ensure_topic  # noqa: E402

LANGS = ["en", "fr", "de", "ja"]


def preload(
    bootstrap: str,
    topic: str,
    x: np.ndarray,
    b64: bool,
    compression: str | None = None,
    id0: int = 0,
) -> float:
    """Produce one upsert per row of x (batches compressed with `compression`, e.g. lz4);
    returns messages/s."""
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=1 << 24,
        compression_type=compression,
    )
    t = time.perf_counter()
    for i in range(x.shape[0]):
        key, value = encode_upsert(id0 + i, x[i], {"lang": LANGS[i % 4], "ts": i}, b64=b64)
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()
    return x.shape[0] / (time.perf_counter() - t)


def ingest_once(bootstrap: str, topic: str, dim: int) -> tuple[float, int]:
    """Seconds from start to caught up, reading `topic` into an empty index."""
    index = linr.Index(dim, device="cpu")
    ing = Ingester(index, IngestSettings(bootstrap=bootstrap, topic=topic))
    t = time.perf_counter()
    ing.start()
    while not ing.ready:
        time.sleep(0.002)
    took = time.perf_counter() - t
    ing.stop(final_snapshot=False)
    return took, len(index)


def consume_only(bootstrap: str, topic: str, n: int) -> float:
    """Seconds for kafka-python alone to read n records of `topic` (the client's ceiling)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_wait_ms=50,
    )
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    t = time.perf_counter()
    got = 0
    while got < n:
        got += sum(len(m) for m in c.poll(timeout_ms=100).values())
    took = time.perf_counter() - t
    c.close()
    return took


def rate_section(args: argparse.Namespace, bootstrap: str, rows: list[dict[str, Any]]) -> None:
    rng = np.random.default_rng(0)
    for fmt, n in (("b64", args.n), ("b64_lz4", args.n), ("json", args.json_n)):
        topic = f"bench-rate-{fmt}-{time.time_ns()}"
        ensure_topic(bootstrap, topic, 2)
        x = rng.standard_normal((n, args.dim), dtype=np.float32)
        lz4 = "lz4" if fmt.endswith("lz4") else None
        prate = preload(bootstrap, topic, x, fmt.startswith("b64"), lz4)
        ingest_once(bootstrap, topic, args.dim)  # warm-up
        runs = [ingest_once(bootstrap, topic, args.dim) for _ in range(args.repeats)]
        assert all(count == n for _, count in runs), runs
        rates = [n / t for t, _ in runs]
        base = n / statistics.median(consume_only(bootstrap, topic, n) for _ in range(2))
        med = statistics.median(rates)
        print(
            f"ingest {fmt:<7} N={n:,} D={args.dim}: {med:,.0f} upserts/s "
            f"(runs {', '.join(f'{r:,.0f}' for r in rates)}); kafka-python alone "
            f"{base:,.0f} records/s; ingest/client {med / base:.2f}; "
            f"(preload produced {prate:,.0f}/s)"
        )
        rows.append(
            {
                "metric": f"ingest_rate_{fmt}",
                "value": round(med),
                "unit": "upserts/s",
                "spread": f"{min(rates):.0f}-{max(rates):.0f}",
                "baseline": round(base),
            }
        )


# ---- freshness and search latency under a background stream ------------------------------
_STREAMER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from kafka import KafkaProducer
from ingest.messages import encode_upsert
bootstrap, topic, rate, seconds, dim, id0, span, seed = sys.argv[2], sys.argv[3], \
    float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), \
    int(sys.argv[8]), int(sys.argv[9])
n = int(rate * seconds)
rng = np.random.default_rng(seed)  # fresh vectors each phase: no duplicates of earlier ones
x = rng.standard_normal((n, dim), dtype=np.float32)
# span > 0: replace random existing items id0..id0+span-1 (the index keeps its size);
# span == 0: insert new ids id0, id0+1, ...
ids = id0 + (rng.integers(0, span, n) if span else np.arange(n))
msgs = [encode_upsert(int(ids[i]), x[i], {"lang": "en", "ts": i}) for i in range(n)]
p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
print("go", flush=True)
t0 = time.monotonic()
for i, (k, v) in enumerate(msgs):
    p.send(topic, key=k, value=v)
    ahead = t0 + (i + 1) / rate - time.monotonic()
    if ahead > 0.001:
        time.sleep(ahead)
p.flush()
print(f"sent {n} in {time.monotonic() - t0:.2f} s", flush=True)
"""


def query_loop(index: linr.Index, qps: float, seconds: float, dim: int, seed: int) -> list[float]:
    """Latencies (ms) of single-vector k=10 searches issued at `qps` for `seconds`."""
    rng = np.random.default_rng(seed)
    lat = []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        q = rng.standard_normal(dim, dtype=np.float32)
        t = time.perf_counter()
        index.search(q, k=10)
        lat.append((time.perf_counter() - t) * 1000)
        i += 1
        ahead = t0 + i / qps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    return lat


def probe(
    bootstrap: str,
    topic: str,
    index: linr.Index,
    dim: int,
    halt: threading.Event,
    out: list[float],
    sends: list[float],
) -> None:
    """Produce a marker item every 100 ms; time until the index holds it (`out`), and how
    much of that was the producer's own send and flush (`sends`)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    # The first send would otherwise also wait for the producer's connection and the topic's
    # metadata: a one-off cost of this producer, not of getting an item into the index.
    p.partitions_for(topic)
    v = np.ones(dim, np.float32)
    marker = 10**12
    while not halt.is_set():
        marker += 1
        key, value = encode_upsert(marker, v)
        t = time.perf_counter()
        p.send(topic, key=key, value=value)
        p.flush()
        sends.append((time.perf_counter() - t) * 1000)
        while marker not in index and time.perf_counter() - t < 10:
            time.sleep(0.0005)
        out.append((time.perf_counter() - t) * 1000)
        halt.wait(0.1)
    p.close()


def start_streamer(
    args: argparse.Namespace, bootstrap: str, topic: str, id0: int, span: int, seed: int
) -> Any:
    """A separate process producing --stream-rate upserts/s to `topic` for --stream-s:
    replacing random items among ids id0..id0+span-1, or inserting new ids from id0 when
    span is 0."""
    cmd = [sys.executable, "-c", _STREAMER, str(ROOT), bootstrap, topic]
    cmd += [str(args.stream_rate), str(args.stream_s), str(args.dim), str(id0), str(span)]
    cmd += [str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
    return proc


def _cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by process `pid` (0 when unknown)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def stream_section(
    args: argparse.Namespace, bootstrap: str, rows: list[dict[str, Any]], broker_pid: int | None
) -> None:
    """Search latency in three conditions, the last two alternated --rounds times:
    quiet (nothing streams), unconsumed (the streamer writes to a topic nobody reads: the
    producer and the broker load this machine's 2 cores as they would not in production),
    consumed (the same stream, into a topic an ingester applies). "With vs without
    ingestion" compares the last two: the cost of ingesting, everything else equal.

    Every phase streams into a topic of its own, read by an ingester of its own (on the
    same index): tansu's CPU per fetch grows with the length of the partition (measured:
    14% of a core in the first consumed phase, 48% in the fifth, on one topic), which a
    real broker's does not, and which would be counted against ingestion here."""
    stamp = time.time_ns()
    index = linr.Index(args.dim, device="cpu")
    x = np.random.default_rng(2).standard_normal((args.search_n, args.dim), dtype=np.float32)
    for s in range(0, args.search_n, 100_000):
        e = min(s + 100_000, args.search_n)
        index.upsert(
            np.arange(s, e), x[s:e], [{"lang": LANGS[i % 4], "ts": i} for i in range(s, e)]
        )
    n_phase = int(args.stream_rate * args.stream_s)
    n_stream = n_phase * (args.rounds + 1)  # the measured rounds, then the probe's phase
    inserts = args.stream_ids == "insert"
    if args.reserve and inserts:  # room for every streamed item: no growth while measuring
        index.reserve(args.search_n + n_stream)
    fetch = {"fetch_min_bytes": args.fetch_min_bytes} if args.fetch_min_bytes else {}
    query_loop(index, args.qps, 1.0, args.dim, 0)  # warm-up
    quiet = query_loop(index, args.qps, args.stream_s, args.dim, 1)
    unconsumed: list[float] = []
    consumed: list[float] = []
    probes: list[float] = []
    sends: list[float] = []
    per_round: list[float] = []
    fresh_ms: list[np.ndarray] = []
    broker_cpu: dict[str, list[float]] = {"not consumed": [], "consumed": []}
    applied = 0

    def stream_to(topic: str, r: int) -> Any:
        ensure_topic(bootstrap, topic, 2)
        if inserts:
            return start_streamer(args, bootstrap, topic, args.search_n + r * n_phase, 0, r)
        return start_streamer(args, bootstrap, topic, 0, args.search_n, 100 + r)

    def ingester_for(topic: str) -> Ingester:
        ensure_topic(bootstrap, topic, 2)
        ing = Ingester(
            index,
            IngestSettings(
                bootstrap=bootstrap, topic=topic, freshness_window=n_phase + 1000, **fetch
            ),
        )
        ing.start()
        while not ing.ready:
            time.sleep(0.01)
        return ing

    def finish(ing: Ingester, produced: int) -> None:
        nonlocal applied
        deadline = time.monotonic() + 30
        while ing.applied + ing.ignored_stale < produced and time.monotonic() < deadline:
            time.sleep(0.05)
        st = ing.stats()
        ing.stop(final_snapshot=False)
        assert st["applied"] == produced and st["dead_lettered"] == 0, (produced, st)
        fresh_ms.append(ing.freshness_samples())
        applied += st["applied"]

    def phase(name: str, seed: int) -> list[float]:
        cpu0, t0 = _cpu_s(broker_pid), time.monotonic()
        lat = query_loop(index, args.qps, args.stream_s, args.dim, seed)
        broker_cpu[name].append((_cpu_s(broker_pid) - cpu0) / (time.monotonic() - t0))
        return lat

    for r in range(args.rounds):
        streamer = stream_to(f"bench-stream-{stamp}-unread-{r}", r)
        u = phase("not consumed", 10 + r)
        streamer.wait()
        ing = ingester_for(f"bench-stream-{stamp}-{r}")
        streamer = stream_to(f"bench-stream-{stamp}-{r}", r)
        c = phase("consumed", 20 + r)
        streamer.wait()
        finish(ing, n_phase)
        unconsumed += u
        consumed += c
        per_round.append(pct(c, 99) / pct(u, 99))
    # The probe polls the index every 0.5 ms from Python: its own phase, so that its GIL
    # traffic is not counted against ingestion in the latencies above.
    topic = f"bench-stream-{stamp}-probe"
    ing = ingester_for(topic)
    streamer = stream_to(topic, args.rounds)
    halt = threading.Event()
    prober = threading.Thread(
        target=probe, args=(bootstrap, topic, index, args.dim, halt, probes, sends)
    )
    prober.start()
    query_loop(index, args.qps, args.stream_s, args.dim, 30)
    streamer.wait()
    halt.set()
    prober.join()
    finish(ing, n_phase + len(probes))
    expect = args.search_n + len(probes) + (n_stream if inserts else 0)
    assert len(index) == expect, (len(index), expect)
    samples = np.concatenate(fresh_ms)
    fresh = {"p50": round(pct(samples.tolist(), 50), 2), "p99": round(pct(samples.tolist(), 99), 2)}
    st = {"applied": applied}
    ratio = pct(consumed, 99) / pct(unconsumed, 99)
    raw = pct(consumed, 99) / pct(quiet, 99)
    print(
        f"freshness under {args.stream_rate:,.0f} upserts/s, "
        f"{args.rounds + 1} x {args.stream_s:g} s "
        f"(ingester, {st['applied']:,} messages): p50 {fresh['p50']:.1f} ms, "
        f"p99 {fresh['p99']:.1f} ms"
    )
    print(
        f"freshness end to end (probe, {len(probes)} markers): p50 {pct(probes, 50):.1f} ms, "
        f"p99 {pct(probes, 99):.1f} ms, max {max(probes):.1f} ms; of which the probe's own "
        f"send and flush: p50 {pct(sends, 50):.1f} ms, max {max(sends):.1f} ms"
    )
    what = "new items" if inserts else "replacing existing items"
    print(
        f"search N={args.search_n:,} k=10, one query at a time at {args.qps:g} qps; "
        f"the stream {what}:"
    )
    for name, lat in (
        ("quiet machine", quiet),
        ("stream not consumed", unconsumed),
        ("stream consumed", consumed),
    ):
        print(
            f"    {name:<20} p50 {pct(lat, 50):6.2f} ms  p99 {pct(lat, 99):6.2f} ms  "
            f"({len(lat)} queries)"
        )
    if broker_pid is not None:
        print(
            "local broker CPU per phase (% of a core): "
            + "; ".join(
                f"{k} {', '.join(f'{100 * v:.0f}' for v in vs)}" for k, vs in broker_cpu.items()
            )
        )
    print(f"search p99, consumed / quiet machine: {raw:.2f}")
    print(
        f"search p99 with / without ingestion (same stream load): {ratio:.2f} "
        f"(rounds: {', '.join(f'{x:.2f}' for x in per_round)})"
    )
    rows += [
        {"metric": "freshness_p50", "value": fresh["p50"], "unit": "ms"},
        {"metric": "freshness_p99", "value": fresh["p99"], "unit": "ms"},
        {"metric": "probe_freshness_p50", "value": round(pct(probes, 50), 2), "unit": "ms"},
        {"metric": "probe_freshness_p99", "value": round(pct(probes, 99), 2), "unit": "ms"},
        {"metric": "probe_send_max", "value": round(max(sends), 2), "unit": "ms"},
        {"metric": "search_p99_quiet", "value": round(pct(quiet, 99), 3), "unit": "ms"},
        {"metric": "search_p99_unconsumed", "value": round(pct(unconsumed, 99), 3), "unit": "ms"},
        {"metric": "search_p99_ingesting", "value": round(pct(consumed, 99), 3), "unit": "ms"},
        {"metric": "search_p99_ratio_vs_quiet", "value": round(raw, 3), "unit": "x"},
        {
            "metric": f"search_p99_ratio_{args.stream_ids}",
            "value": round(ratio, 3),
            "unit": "x",
            "spread": "/".join(f"{x:.2f}" for x in per_round),
        },
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a running Kafka (default: start a local tansu)")
    ap.add_argument("--n", type=int, default=300_000, help="b64 messages for the rate")
    ap.add_argument("--json-n", type=int, default=60_000, help="JSON-list messages")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--search-n", type=int, default=200_000, help="items searched")
    ap.add_argument("--qps", type=float, default=50.0, help="search rate during the test")
    ap.add_argument("--stream-rate", type=float, default=5000.0)
    ap.add_argument("--stream-s", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--rounds", type=int, default=3, help="unconsumed/consumed alternations")
    ap.add_argument(
        "--stream-ids",
        choices=("update", "insert"),
        default="update",
        help="update: the stream replaces random existing items, so every phase searches "
        "the same number; insert: it adds new items (the index grows as it is measured)",
    )
    ap.add_argument(
        "--reserve", action="store_true", help="insert: reserve capacity for the stream first"
    )
    ap.add_argument(
        "--fetch-min-bytes", type=int, help="the ingester's fetch_min_bytes (default: its own)"
    )
    ap.add_argument("--torch-threads", type=int, help="torch intra-op threads for searches")
    ap.add_argument("--skip", choices=("rate", "stream"), help="leave a section out")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks/results/ingest.csv"))
    args = ap.parse_args()
    if args.quick:
        args.n, args.json_n, args.repeats = 20_000, 5_000, 1
        args.search_n, args.stream_s, args.rounds = 20_000, 2.0, 1

    broker = None
    scratch = Path(tempfile.mkdtemp(prefix="linr-bench-"))
    bootstrap = args.bootstrap
    if bootstrap is None:
        from linr.testing.broker import LocalBroker

        broker = LocalBroker(scratch)
        broker.start()
        bootstrap = broker.bootstrap
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"broker {bootstrap}{' (local tansu)' if broker else ''}"
    )
    rows: list[dict[str, Any]] = []
    try:
        if args.skip != "rate":
            rate_section(args, bootstrap, rows)
        if args.skip != "stream":
            pid = broker.proc.pid if broker is not None and broker.proc is not None else None
            stream_section(args, bootstrap, rows, pid)
    finally:
        if broker is not None:
            broker.stop()
    if args.quick:
        return
    path = append_rows(args.csv, rows, dim=args.dim)
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
