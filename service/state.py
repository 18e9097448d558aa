"""What one running service holds: the index, its worker, the ingester, and their lifecycle.

The index loads on a background thread so the server answers /healthz (and /readyz 503)
while a large index is still being read; /v1 answers 503 until it is there.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linr import Index, InvalidInput
from service.batcher import Batcher
from service.errors import ApiError
from service.metrics import Metrics
from service.settings import Settings

if TYPE_CHECKING:
    from ingest import Ingester
    from service.writes import KafkaWriter

log = logging.getLogger("linr.service")


def _snapshots() -> Any:
    """ingest.snapshots if it is installed (the `ingest` extra), else None."""
    try:
        from ingest import snapshots
    except ImportError:
        return None
    return snapshots


def load_index(settings: Settings) -> tuple[Index, dict[int, int] | None]:
    """(index, Kafka offsets it includes or None): the newest snapshot in --snapshot-dir,
    else INDEX_DIR, else a new empty index of --dim."""
    if settings.snapshot_dir is not None:
        snaps = _snapshots()
        if snaps is not None:
            got = snaps.load_latest(settings.snapshot_dir, settings.device)
            if got is not None:
                index, offsets = got
                log.info("loaded snapshot from %s (%d items)", settings.snapshot_dir, len(index))
                return index, dict(offsets)
        elif (settings.snapshot_dir / "manifest.json").is_file():
            return Index.load(settings.snapshot_dir, settings.device), None
    if settings.index_dir is not None:
        index = Index.load(settings.index_dir, settings.device, settings.rerank_device)
        log.info("loaded %s (%d items)", settings.index_dir, len(index))
        return index, None
    if settings.dim is None:
        raise InvalidInput(
            f"no snapshot in {settings.snapshot_dir}, and neither INDEX_DIR nor --dim was given"
        )
    schema = None
    if settings.schema_file is not None:
        schema = json.loads(Path(settings.schema_file).read_text())
    onebit = {
        name: getattr(settings, name)
        for name in ("bits", "rerank", "rerank_device")
        if getattr(settings, name) is not None
    }
    return Index(
        settings.dim,
        settings.metric,
        settings.quantization,
        settings.device,
        schema=schema,
        **onebit,
    ), None


class AppState:
    def __init__(self, settings: Settings, metrics: Metrics, index: Index | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.index: Index | None = None
        self.batcher: Batcher | None = None
        self.ingester: Ingester | None = None
        self.offsets: dict[int, int] | None = None
        self.load_error: str | None = None
        self._writer: KafkaWriter | None = None
        self._writer_lock = threading.Lock()
        self._given = index
        self._loader: threading.Thread | None = None
        self._closed = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._loader = threading.Thread(target=self._load, name="linr-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            index, offsets = (
                (self._given, None) if self._given is not None else load_index(self.settings)
            )
            batcher = Batcher(
                index,
                window_s=self.settings.batch_window_ms / 1000.0,
                max_queries=self.settings.max_batch_queries,
                max_queue=self.settings.max_queue,
                on_batch=self.metrics.observe_batch,
                slice_s=self.settings.search_slice_ms / 1000.0,
            )
            if self._closed.is_set():
                batcher.stop()
                return
            self.offsets = offsets
            self.batcher = batcher
            if self.settings.kafka_bootstrap:
                self.ingester = self._start_ingester(index)
            self.index = index  # last: its presence is what "loaded" means
        except Exception as e:  # noqa: BLE001 - shown by /readyz and the log, not raised
            log.exception("could not load the index")
            self.load_error = f"{type(e).__name__}: {e}"

    def _start_ingester(self, index: Index) -> Ingester:
        # The ingester reads the offsets the index includes from its manifest (written by
        # ingest.snapshots), checking they are of the same topic.
        from ingest import Ingester, IngestSettings

        s = self.settings
        assert s.kafka_bootstrap is not None  # only called when it is set
        ing = Ingester(
            index,
            IngestSettings(
                bootstrap=s.kafka_bootstrap,
                topic=s.topic,
                group=s.group,
                partitions=s.partitions,
                snapshot_dir=s.snapshot_dir,
                snapshot_every_s=s.snapshot_every_s,
                snapshot_every_messages=s.snapshot_every_messages,
                on_log_reset=s.on_log_reset,
            ),
        )
        ing.start()
        return ing

    def stop(self) -> None:
        """Stop the ingester (final snapshot), the worker, and write the final snapshot when
        --snapshot-dir is set and no ingester wrote one."""
        self._closed.set()
        if self._loader is not None:
            self._loader.join()
        if self.batcher is not None:
            self.batcher.stop()  # first: HTTP writes still queued reach the final snapshot
        if self._writer is not None:
            self._writer.close()
        if self.ingester is not None:
            self.ingester.stop(final_snapshot=True)  # a no-op without --snapshot-dir
        if self.index is not None and self.ingester is None and self.settings.snapshot_dir:
            self._final_snapshot()

    def _final_snapshot(self) -> None:
        snaps = _snapshots()
        d = self.settings.snapshot_dir
        assert d is not None and self.index is not None
        if snaps is not None:
            # Offsets of the snapshot we started from stay true: no log was read since.
            topic = self.index.manifest_extra.get("topic") if self.offsets else None
            path = snaps.write_snapshot(self.index, d, dict(self.offsets or {}), topic=topic)
        else:
            self.index.save(d)
            path = d
        log.info("final snapshot written to %s", path)

    # -- readiness -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.index is not None and (self.ingester is None or bool(self.ingester.ready))

    def not_ready_reason(self) -> str:
        if self.load_error is not None:
            return f"the index failed to load: {self.load_error}"
        if self.index is None:
            return "the index is loading"
        if self.ingester is not None and self.ingester.stopped is not None:
            return f"the ingester stopped: {self.ingester.stopped}"
        return "the ingester has not caught up with the log yet"

    def writer(self) -> KafkaWriter | None:
        """The producer of HTTP writes when the service reads a topic (read your writes),
        else None: writes then go straight into the index."""
        if self.settings.kafka_bootstrap is None:
            return None
        with self._writer_lock:  # made on the first write: it connects to the broker
            if self._writer is None:
                from service.writes import KafkaWriter

                self._writer = KafkaWriter(self.settings.kafka_bootstrap, self.settings.topic)
            return self._writer

    def require(self) -> tuple[Index, Batcher]:
        if self.index is None or self.batcher is None:
            raise ApiError(503, "not_ready", self.not_ready_reason())
        return self.index, self.batcher

    def snapshot_for_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ready": 1.0 if self.ready else 0.0,
            "queue_depth": self.batcher.depth if self.batcher is not None else 0,
        }
        if self.index is not None:
            out["index"] = self.index.stats()
        if self.ingester is not None:
            out["ingest"] = self.ingester.stats()
        return out
