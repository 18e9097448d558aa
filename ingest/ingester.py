"""The ingester: a background thread in the serving process that reads the item topic and
applies it to the live index.

    ing = Ingester(index, IngestSettings(bootstrap="kafka:9092", topic="linr-items",
                                         snapshot_dir="/var/lib/linr"))
    ing.start()      # returns at once; ing.ready turns True once caught up
    ...
    ing.stop()       # final snapshot when snapshot_dir is set

Partitions are assigned explicitly (`assign()`, all of the topic's or `partitions`), never
through group rebalancing: which part of the log an index holds is the index's business,
and the offsets it has applied are stored in its snapshots, not in a consumer group. On
start each partition is read from the offset stored with the index (from the snapshot it
was loaded from), else from the beginning. Only committed records are read
(`read_committed`): an open transaction's records wait for its commit, aborted ones are
skipped where the broker reports them, and so are control records. Any failure (broker
outage, topic missing) is counted, logged and retried with exponential backoff from the
offsets already applied; searches keep being served from the index meanwhile.

The log the offsets belong to is identified (ingest/log_identity.py) and checked at every
(re)connect, every `_LOG_CHECK_S` while idle, and before each batch; when it is not the log
the index was built from, `on_log_reset` says what happens: `stop` (ingestion stops,
`stats()["stopped"]` says why, the index keeps serving) or `rebuild` (the index is cleared
and rebuilt from the new log's beginning). A snapshot that fails is counted and retried
later, without disconnecting or pausing ingestion.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ingest import snapshots
from ingest.apply import apply
from ingest.dlq import DeadLetters
from ingest.freshness import Window
from ingest.gc_pause import gc_paused
from ingest.group_commit import GroupCommitter
from ingest.log_identity import LogIdentity, cached_topic_id, read_identity, reset_reason
from ingest.messages import decode
from ingest.settings import IngestSettings
from linr import Index

log = logging.getLogger("linr.ingest")

# A fetch of up to 5,000 b64 messages at D=128 is ~3.8 MB; larger fetches keep the consumer
# from waiting on round trips when it is catching up.
_FETCH_MAX_BYTES = 64 << 20
_PARTITION_FETCH_MAX_BYTES = 8 << 20
# How often, while polls come back empty, the broker is asked for the log's identity (one
# ListOffsets round trip: also how an outage is noticed, as kafka-python's poll() just
# returns nothing while the broker is away), and how old the metadata cache (topic id,
# leader epochs) may get.
_LOG_CHECK_S = 1.0
_METADATA_MAX_AGE_MS = 2_000
_LOG_CHECK_TIMEOUT_MS = 5_000


class LogReset(Exception):
    """The broker's log is not the one the index holds (see ingest/log_identity.py)."""


class Ingester:
    def __init__(
        self,
        index: Index,
        settings: IngestSettings,
        *,
        offsets: Mapping[int, int] | None = None,
    ) -> None:
        """`offsets` (partition -> next offset to apply) are those the index already
        includes. When None they are read from the index's manifest if it was loaded from a
        snapshot of the same topic (`ingest.snapshots.load_latest`), else every partition
        is read from the beginning."""
        self.index = index
        self.settings = settings
        extra = index.manifest_extra
        same_topic = extra.get("topic") in (None, settings.topic)
        if offsets is None and extra.get("offsets") and same_topic:
            offsets = {int(p): int(o) for p, o in extra["offsets"].items()}
        self._offsets: dict[int, int] = dict(offsets or {})
        self._identity = LogIdentity.from_json(extra.get("log")) if same_topic else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._committer = GroupCommitter(settings)
        self._tps: list[Any] = []
        self._targets: dict[int, int] = {}  # partition -> log end first seen (readiness)
        self._highwater: dict[int, int] = {}
        self._ready = False
        self._dlq = DeadLetters(
            settings.bootstrap,
            settings.dead_letter_topic,
            settings.topic,
            f"{settings.client_id}-dlq",
        )
        self._fresh = Window(settings.freshness_window)
        self.applied = 0
        self.ignored_stale = 0
        self.dead_lettered = 0
        self.errors = 0
        self.last_error: str | None = None
        self.snapshots_written = 0
        self.last_snapshot: str | None = None
        self.snapshot_errors = 0
        self.last_snapshot_error: str | None = None
        self._snapshot_retry_at = 0.0
        self._snapshot_backoff = 0.0
        self.outages = 0  # times the broker (or topic) went from working to failing
        self._failing = False
        self.stopped: str | None = None  # why ingestion stopped (a log reset), else None
        self.rebuilds = 0
        self._since_snapshot = 0
        self._last_snapshot_t = time.monotonic()
        self._last_log_check = 0.0
        self._last_poll_empty = True

    # ---- public ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the ingester was already started")
        self._thread = threading.Thread(target=self._run, name="linr-ingest", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """True once every partition has been applied up to the log end seen at start, and
        as long as ingestion has not stopped on a log reset."""
        return self._ready and self.stopped is None

    def caught_up(self, after: Mapping[int, int]) -> bool:
        """Has the record at offset `after[p]` of each partition p been applied (or
        dead-lettered)? Partitions this ingester does not read hold nothing of the index:
        they count as applied."""
        read = self.settings.partitions
        return all(
            self._offsets.get(p, 0) > o for p, o in after.items() if read is None or p in read
        )

    def stats(self) -> dict[str, Any]:
        # Copies first: the ingest thread may add partitions while this runs (HTTP thread).
        offsets, highwater = dict(self._offsets), dict(self._highwater)
        lag_by_partition = {p: max(hw - offsets.get(p, 0), 0) for p, hw in highwater.items()}
        return {
            "topic": self.settings.topic,
            "ready": self.ready,
            "stopped": self.stopped,
            "on_log_reset": self.settings.on_log_reset,
            "rebuilds": self.rebuilds,
            "log": self._identity.to_json() if self._identity is not None else None,
            "applied": self.applied,
            "ignored_stale": self.ignored_stale,
            "dead_lettered": self.dead_lettered,
            "errors": self.errors,
            "last_error": self.last_error,
            "outages": self.outages,
            "connected": self._consumer is not None and not self._failing,
            "lag": sum(lag_by_partition.values()),
            "lag_by_partition": lag_by_partition,
            "freshness_ms": self._fresh.percentiles(),
            "offsets": offsets,
            "snapshots_written": self.snapshots_written,
            "last_snapshot": self.last_snapshot,
            "snapshot_errors": self.snapshot_errors,
            "last_snapshot_error": self.last_snapshot_error,
            "dead_letters_waiting": self._dlq.waiting,
        }

    def freshness_samples(self) -> np.ndarray:
        """The last `freshness_window` freshness samples (ms), in no particular order."""
        return self._fresh.samples()

    def stop(self, final_snapshot: bool = True, timeout_s: float = 30.0) -> None:
        """Stop the thread; write a last snapshot (when snapshot_dir is set and
        `final_snapshot`), close the clients. Safe to call more than once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("the ingest thread did not stop within %.0f s", timeout_s)
                return
        self._dlq.flush(timeout_s=min(timeout_s, 10.0))
        if final_snapshot and self.settings.snapshot_dir is not None and self.stopped is None:
            self._try_snapshot()
        self._committer.commit(self._offsets, force=True)
        self._close_clients()
        self._dlq.close()

    def snapshot(self) -> Path | None:
        """Write a snapshot now. Only call it from the ingest thread or once it has stopped:
        the offsets it records must be exactly those applied to the index."""
        if self.settings.snapshot_dir is None:
            return None
        offsets = dict(self._offsets)
        # Never claim offsets whose dead letters are not durable yet: read them again.
        for p, low in self._dlq.pending_offsets().items():
            offsets[p] = min(offsets.get(p, low), low)
        t0 = time.perf_counter()
        path = snapshots.write_snapshot(
            self.index,
            self.settings.snapshot_dir,
            offsets,
            topic=self.settings.topic,
            keep=self.settings.snapshot_keep,
            log_identity=self._identity.to_json() if self._identity is not None else None,
        )
        self.snapshots_written += 1
        self.last_snapshot = str(path)
        self._since_snapshot = 0
        self._last_snapshot_t = time.monotonic()
        log.info(
            "snapshot %s (%d items) in %.2f s", path.name, len(self.index), time.perf_counter() - t0
        )
        return path

    # ---- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.settings.retry_backoff_s
        while not self._stop.is_set() and self.stopped is None:
            try:
                if self._consumer is None:
                    self._connect()
                self._step()
                if self._failing:
                    log.info("ingesting again after: %s", self.last_error)
                self._failing = False
                backoff = self.settings.retry_backoff_s
            except LogReset as e:
                self._close_clients()
                self._on_log_reset(str(e))
            except Exception as e:  # noqa: BLE001 - every failure is retried, none is fatal
                self.errors += 1
                self.outages += not self._failing
                self._failing = True
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("ingest error (retrying in %.1f s): %s", backoff, self.last_error)
                self._close_clients()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)

    def _on_log_reset(self, reason: str) -> None:
        if self.settings.on_log_reset == "stop":
            self.stopped = f"{reason}; ingestion stopped (on_log_reset=stop)"
            log.error("%s: the index keeps serving what it holds", self.stopped)
            return
        log.warning("%s: rebuilding the index from the new log's beginning", reason)
        self.index.clear()
        self._offsets.clear()
        self._targets.clear()
        self._highwater.clear()
        self._identity = None
        self._ready = False
        self._since_snapshot += 1  # the next snapshot records the empty index and new log
        self.rebuilds += 1

    def _connect(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        s = self.settings
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap.split(","),
            client_id=s.client_id,
            group_id=None,  # assign(), no group: see the module docstring
            enable_auto_commit=False,
            isolation_level="read_committed",
            # An offset the log does not hold raises (then handled as a log reset) instead
            # of silently moving to one end of the log.
            auto_offset_reset="none",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
            max_poll_records=s.max_batch,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            fetch_min_bytes=s.fetch_min_bytes,
            bootstrap_timeout_ms=10_000,  # then retried with backoff; keeps stop() prompt
            fetch_max_bytes=_FETCH_MAX_BYTES,
            max_partition_fetch_bytes=_PARTITION_FETCH_MAX_BYTES,
        )
        try:
            parts = consumer.partitions_for_topic(s.topic)
            if not parts and self._identity is not None and self._offsets:
                raise LogReset(f"topic {s.topic!r} is gone: the broker has no such topic")
            if not parts:
                raise RuntimeError(f"topic {s.topic!r} does not exist (yet)")
            wanted = s.partitions if s.partitions is not None else sorted(parts)
            missing = sorted(set(wanted) - set(parts))
            if missing:
                raise RuntimeError(f"topic {s.topic!r} has no partition(s) {missing}")
            tps = [TopicPartition(s.topic, p) for p in wanted]
            consumer.assign(tps)
            self._check_log(consumer, tps)
            for tp in tps:
                if tp.partition in self._offsets:
                    consumer.seek(tp, self._offsets[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
        except BaseException:
            consumer.close(autocommit=False)
            raise
        self._consumer, self._tps = consumer, tps
        log.info(
            "consuming %s partitions %s from %s",
            s.topic,
            wanted,
            {p: self._offsets.get(p, "beginning") for p in wanted},
        )

    def _check_log(self, consumer: Any, tps: list[Any]) -> None:
        """Ask the broker which log it holds; raise LogReset when it is not the index's.
        A fresh index (no offsets yet) takes the broker's log as its own."""
        now = read_identity(consumer, self.settings.topic, tps, _LOG_CHECK_TIMEOUT_MS)
        self._last_log_check = time.monotonic()
        if self._identity is not None and self._offsets:
            reason = reset_reason(self.settings.topic, self._identity, now, self._offsets)
            if reason is not None:
                raise LogReset(reason)
        self._identity = now if self._identity is None else self._identity.merged(now)

    def _poll(self, consumer: Any) -> list[Any]:
        from kafka.errors import OffsetOutOfRangeError

        try:
            polled = consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
        except OffsetOutOfRangeError as e:
            raise LogReset(
                f"topic {self.settings.topic!r}: the log no longer holds offsets {e} "
                "the index would read next"
            ) from None
        records = [m for msgs in polled.values() for m in msgs]
        if records and self._identity is not None and self._identity.topic_id is not None:
            tid = cached_topic_id(consumer, self.settings.topic)
            if tid is not None and tid != self._identity.topic_id:
                raise LogReset(
                    f"topic {self.settings.topic!r} was recreated: its id is {tid}, the index "
                    f"was built from {self._identity.topic_id}"
                )
        return records

    def _step(self) -> None:
        consumer = self._consumer
        # While records flow the broker is there, and each batch's topic id is checked in
        # _poll; the round trip is for idle polls, which is also when an outage shows.
        idle = self._last_poll_empty
        if idle and time.monotonic() - self._last_log_check >= _LOG_CHECK_S:
            self._check_log(consumer, self._tps)
        # ingest/gc_pause.py: a batch's objects live until it is applied. The poll is
        # paused too while records flow (it returns at once then); after an empty poll it
        # is not, as it may wait poll_timeout_ms for records.
        with gc_paused() if not idle else contextlib.nullcontext():
            records = self._poll(consumer)
            got = bool(records)
            self._last_poll_empty = not got
            if got:
                with gc_paused():
                    self._apply(records)
            del records  # garbage before the collector resumes
        for tp in self._tps:
            hw = consumer.highwater(tp)
            if hw is not None:
                self._highwater[tp.partition] = hw
                self._targets.setdefault(tp.partition, hw)
            pos = consumer.position(tp, timeout_ms=1000) if not got else None
            if pos is not None:
                # Where nothing was returned, the position is still what we have applied
                # (it moves without records past compacted-away offsets or after a reset).
                self._offsets[tp.partition] = pos
        if not self._ready and len(self._targets) == len(self._tps):
            self._ready = all(self._offsets.get(p, 0) >= t for p, t in self._targets.items())
            if self._ready:
                log.info("caught up with the log end seen at start: %s", self._targets)
        self._maybe_snapshot()
        self._committer.commit(self._offsets)

    def _yield_to_searches(self) -> None:
        """Wait, at most `yield_to_searches_ms`, for searches running now to finish: ingest
        work (decoding, applying) that runs beside a search on the same cores slows it more
        than the same work run between searches."""
        self.index.wait_for_searches(self.settings.yield_to_searches_ms / 1000.0)

    def _apply(self, records: list[Any]) -> None:
        """Apply a batch; the offsets move exactly past what is in effect (applied, ignored
        as stale, or dead-lettered). A systemic failure halfway (out of memory) moves them
        past the part that was done, then raises: the rest is read again."""
        self._yield_to_searches()
        batch = decode(records, self.index.dim)
        self._yield_to_searches()
        outcome = apply(self.index, batch)
        now_ms = time.time() * 1000.0
        rejected = batch.rejected + outcome.rejected
        if outcome.error is not None:
            seq = {id(r): i for i, r in enumerate(records)}
            cut = seq[id(batch.ops[outcome.ops_done].record)]
            records = records[:cut]
            rejected = [r for r in rejected if seq[id(r.record)] < cut]
        for r in records:  # records of a partition come in offset order
            self._offsets[r.partition] = r.offset + 1
        self._dlq.send(rejected)  # never raises: unsent letters hold snapshots' offsets back
        ts = np.fromiter((r.timestamp for r in records), np.float64, len(records))
        ts = ts[ts > 0]
        if ts.size:
            self._fresh.add(np.maximum(now_ms - ts, 0.0))
        self.applied += outcome.applied
        self.ignored_stale += outcome.ignored_stale
        self.dead_lettered += len(rejected)
        self._since_snapshot += len(records)
        for r in rejected:
            log.debug("dead letter p%d@%d: %s", r.record.partition, r.record.offset, r.error)
        if outcome.error is not None:
            raise outcome.error

    def _maybe_snapshot(self) -> None:
        s = self.settings
        if s.snapshot_dir is None or self._since_snapshot == 0:
            return
        now = time.monotonic()
        if now < self._snapshot_retry_at:
            return
        due = now - self._last_snapshot_t >= s.snapshot_every_s
        if due or self._since_snapshot >= s.snapshot_every_messages:
            self._dlq.flush(timeout_s=5.0)
            self._try_snapshot()

    def _try_snapshot(self) -> None:
        """A snapshot; a failure (disk full, read-only, a file in the way) is counted and
        retried after a backoff, without stopping or slowing ingestion."""
        try:
            self.snapshot()
            self._snapshot_backoff = 0.0
        except Exception as e:  # noqa: BLE001 - the index and the log are fine; retried
            self.snapshot_errors += 1
            self.last_snapshot_error = f"{type(e).__name__}: {e}"
            self._snapshot_backoff = min(
                max(2 * self._snapshot_backoff, 0.5), self.settings.snapshot_retry_s
            )
            self._snapshot_retry_at = time.monotonic() + self._snapshot_backoff
            log.warning(
                "snapshot failed (retrying in %.1f s): %s",
                self._snapshot_backoff,
                self.last_snapshot_error,
            )

    def _close_clients(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as e:  # noqa: BLE001
                log.debug("closing a consumer: %s", e)
        self._consumer = None
        self._committer.close()
