"""Atomic index snapshots that record the Kafka offsets they include.

The index's durable state is (snapshot, offsets per partition): on restart, load the newest
valid snapshot and replay the log from its offsets. A snapshot is written into a hidden
temporary directory, every file and the directory are fsynced, and only then is it renamed
to its final name `snap-<seq>`; a rename is atomic, so a crash leaves either the complete
snapshot or a `.tmp-*` directory that loading ignores and the next write removes. Each
snapshot lists its files' sizes and SHA-256 digests in `snapshot.json`; one whose files do
not match (a copy cut short, a file system that lost or flipped bits) is never loaded: the
one before it is, which is why the newest two are kept, or else nothing (a full replay).

Layout:

    SNAPSHOT_DIR/snap-0000000042/manifest.json        index manifest; extra.offsets, extra.log
    SNAPSHOT_DIR/snap-0000000042/tensors.safetensors
    SNAPSHOT_DIR/snap-0000000042/snapshot.json         {"seq", "topic", "offsets", "log",
                                                        "files": {name: {"size", "sha256"}}}

`log` identifies the log the offsets belong to (see ingest/log_identity.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linr import Index

log = logging.getLogger("linr.ingest")

_PREFIX = "snap-"
_TMP_PREFIX = ".tmp-snap-"
_NAME = re.compile(r"^snap-(\d{10})$")
_INFO = "snapshot.json"
_HASH_CHUNK = 4 << 20


def list_snapshots(snapshot_dir: str | Path) -> list[Path]:
    """Complete (renamed) snapshots, newest first. Validity is checked when loading."""
    d = Path(snapshot_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_snapshot(
    index: Index,
    snapshot_dir: str | Path,
    offsets: Mapping[int, int],
    *,
    topic: str | None = None,
    keep: int = 2,
    log_identity: Mapping[str, Any] | None = None,
) -> Path:
    """Write `index` with the offsets it includes (partition -> next offset to apply) as a
    new snapshot, atomically; keep the newest `keep` snapshots. Returns the snapshot's path.

    The caller must make sure no write reaches the index between reading `offsets` and this
    call returning (the ingester calls it from its own thread, between batches);
    `index.save` holds the index lock while it copies the tensors."""
    d = Path(snapshot_dir)
    d.mkdir(parents=True, exist_ok=True)
    existing = list_snapshots(d)
    seq = int(_NAME.match(existing[0].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
    final = d / f"{_PREFIX}{seq:010d}"
    tmp = d / f"{_TMP_PREFIX}{seq:010d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    offs = {str(int(p)): int(o) for p, o in sorted(offsets.items())}
    ident = dict(log_identity) if log_identity is not None else None
    extra = {
        "offsets": offs,
        "topic": topic,
        "log": ident,
        "snapshot_seq": seq,
        "written_at": time.time(),
    }
    try:
        index.save(tmp, extra=extra)
        files = {
            p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)}
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        info = {"seq": seq, "topic": topic, "offsets": offs, "log": ident, "files": files}
        (tmp / _INFO).write_text(json.dumps(info, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: give the space back now
        raise
    for p in tmp.iterdir():
        _fsync(p)
    _fsync(tmp)
    os.rename(tmp, final)
    _fsync(d)
    _prune(d, keep)
    return final


def _prune(d: Path, keep: int) -> None:
    for old in list_snapshots(d)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for p in d.iterdir():
        # Temporary directories of writers that died (ours are renamed before we get here).
        if p.name.startswith(_TMP_PREFIX):
            shutil.rmtree(p, ignore_errors=True)


def check_snapshot(path: Path) -> dict[str, Any]:
    """The snapshot's info if its files are all there with the sizes and SHA-256 digests it
    recorded; raises ValueError naming what is wrong otherwise."""
    info_path = path / _INFO
    if not info_path.is_file():
        raise ValueError(f"{path} has no {_INFO}")
    info: dict[str, Any] = json.loads(info_path.read_text())
    for name, want in info["files"].items():
        f = path / name
        if not f.is_file():
            raise ValueError(f"{path}: {name} is missing")
        size = want["size"] if isinstance(want, dict) else want  # older snapshots: size only
        if f.stat().st_size != size:
            raise ValueError(f"{path}: {name} has {f.stat().st_size} bytes, expected {size}")
        if not isinstance(want, dict):
            log.warning("%s: %s has no recorded SHA-256 (an older snapshot)", path, name)
            continue
        got = sha256_of(f)
        if got != want["sha256"]:
            raise ValueError(f"{path}: {name} has SHA-256 {got}, expected {want['sha256']}")
    return info


def load_latest(
    snapshot_dir: str | Path, device: str = "auto"
) -> tuple[Index, dict[int, int]] | None:
    """(index, offsets) from the newest valid snapshot in `snapshot_dir`, or None if there is
    none. A snapshot that fails to load is logged and skipped for the one before it."""
    from linr.index import Index

    for path in list_snapshots(snapshot_dir):
        try:
            info = check_snapshot(path)
            index = Index.load(path, device)
        except Exception as e:  # noqa: BLE001 - any failure means "not this one"
            log.warning("skipping snapshot %s: %s: %s", path, type(e).__name__, e)
            continue
        offsets = {int(p): int(o) for p, o in info["offsets"].items()}
        log.info("loaded snapshot %s (%d items, offsets %s)", path.name, len(index), offsets)
        return index, offsets
    return None
