"""`linr produce`: stream a vector file (+ attributes, ids) into a Kafka topic (needs the
`ingest` extra).

    linr produce items.fbin --attributes attrs.jsonl --bootstrap kafka:9092 \
        --topic linr-items --rate 5000

Each item becomes one message in the format of docs/ingest.md, keyed by its id: vectors as
`vector_b64` (or `--format json` for JSON lists). `--delete-fraction F` follows a random
fraction F of the items with a tombstone for them (for tests and demos); `--deletes-out`
writes which ids those were.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from linr.cli.main import env_default, positive_int

_BATCH_ROWS = 4096  # rows read from the files at a time


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} is not between 0 and 1")
    return v


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} is not a positive number")
    return v


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "produce",
        help="stream a vector file into a Kafka topic",
        description="Stream the items of a vector file (.fbin, .fvecs, .npy), with optional "
        "attributes (JSON Lines) and ids, into a Kafka topic in linr's message format, keyed "
        "by id. See docs/ingest.md.",
    )
    p.add_argument("vectors", metavar="VECTORS", help="vectors: .fbin, .fvecs or .npy")
    p.add_argument(
        "--attributes",
        metavar="ATTRS",
        default=env_default("attributes", None),
        help='JSON Lines, line i = attributes of vector i; an "id" key gives the id',
    )
    p.add_argument(
        "--ids", metavar="IDS", default=env_default("ids", None), help="text file, one id per line"
    )
    bootstrap = env_default("bootstrap", env_default("kafka_bootstrap", None))
    p.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        default=bootstrap,
        required=bootstrap is None,
        help="Kafka bootstrap servers (env LINR_BOOTSTRAP or LINR_KAFKA_BOOTSTRAP)",
    )
    p.add_argument(
        "--topic",
        default=env_default("topic", "linr-items"),
        help="topic to write (default linr-items)",
    )
    p.add_argument(
        "--rate",
        type=_positive,
        default=env_default("rate", None),
        help="messages per second (default: as fast as possible)",
    )
    p.add_argument(
        "--format",
        choices=("b64", "json"),
        default=env_default("format", "b64"),
        help="vector encoding: vector_b64 (default) or a JSON list",
    )
    p.add_argument(
        "--delete-fraction",
        type=_fraction,
        default=env_default("delete_fraction", 0.0),
        help="follow this fraction of the items with a tombstone (default 0)",
    )
    p.add_argument(
        "--deletes-out",
        metavar="PATH",
        default=env_default("deletes_out", None),
        help="write the ids that were deleted, one per line",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=env_default("seed", 0),
        help="random seed for --delete-fraction (default 0)",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=env_default("limit", None),
        help="produce only the first N items",
    )
    p.add_argument(
        "--create-partitions",
        type=positive_int,
        metavar="N",
        default=env_default("create_partitions", None),
        help="create the topic (and TOPIC.dlq) with N partitions if it is missing",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        metavar="S",
        default=env_default("connect_timeout", 15.0),
        help="seconds to wait for the broker before giving up (default 15)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=env_default("quiet", False),
        help="no progress bar or summary",
    )


class Pacer:
    """Holds a sender to `rate` messages per second on average (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.sent = 0

    def tick(self, n: int = 1) -> None:
        self.sent += n
        if self.rate is None:
            return
        ahead = self.t0 + self.sent / self.rate - time.monotonic()
        if ahead > 0.002:  # sleep in steps of >= 2 ms; the average rate stays exact
            time.sleep(ahead)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    from tqdm import tqdm

    from ingest.messages import encode_delete, encode_upsert
    from ingest.topics import ensure_topic
    from linr.io import iter_item_batches, read_vectors_lazy

    n_total, _ = read_vectors_lazy(args.vectors).shape
    n = min(n_total, args.limit) if args.limit else n_total
    try:
        if args.create_partitions:
            ensure_topic(args.bootstrap, args.topic, args.create_partitions)
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap.split(","),
            client_id="linr-produce",
            acks="all",
            linger_ms=10,
            batch_size=256 << 10,
            max_block_ms=30_000,
            bootstrap_timeout_ms=int(args.connect_timeout * 1000),
        )
    except KafkaError as e:
        print(f"linr produce: cannot use Kafka at {args.bootstrap}: {e}", file=sys.stderr)
        return 1
    failures: list[BaseException] = []
    rng = np.random.default_rng(args.seed)
    pacer = Pacer(args.rate)
    deleted: list[Any] = []
    b64 = args.format == "b64"
    upserts = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=n,
        unit=" items",
        unit_scale=True,
        file=sys.stderr,
        desc="produce",
        disable=args.quiet or not sys.stderr.isatty(),
    )
    try:
        batches = iter_item_batches(args.vectors, args.attributes, args.ids, _BATCH_ROWS)
        for batch in batches:
            take = min(len(batch.ids), n - upserts)
            ids = batch.ids[:take]
            ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
            attrs = batch.attributes or [None] * take
            for i in range(take):
                key, value = encode_upsert(ids[i], batch.vectors[i], attrs[i], b64=b64)
                producer.send(args.topic, key=key, value=value).add_errback(failures.append)
                pacer.tick()
            if args.delete_fraction > 0:
                for i in np.flatnonzero(rng.random(take) < args.delete_fraction).tolist():
                    key, tombstone = encode_delete(ids[i])
                    producer.send(args.topic, key=key, value=tombstone).add_errback(failures.append)
                    deleted.append(ids[i])
                    pacer.tick()
            upserts += take
            bar.update(take)
            if failures or upserts >= n:
                break
        producer.flush()
    finally:
        bar.close()
        producer.close(timeout=10)
    if failures:
        raise RuntimeError(f"{len(failures)} message(s) were not delivered: {failures[0]!r}")
    if args.deletes_out:
        Path(args.deletes_out).write_text("".join(f"{i}\n" for i in deleted))
    took = time.perf_counter() - t0
    if not args.quiet:
        print(
            f"linr: produced {upserts} upserts and {len(deleted)} deletes to {args.topic} in "
            f"{took:.1f} s ({(upserts + len(deleted)) / max(took, 1e-9):,.0f} messages/s)",
            file=sys.stderr,
        )
    return 0
