"""`linr serve ARGS...` whose snapshots pause after their files are written and before they
are made durable and renamed, so that tests/ingest/test_crash_recovery.py can kill the
process in the middle of a snapshot. Run as a script: python serve_slow_snapshots.py ARGS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ingest import snapshots
from linr.cli.main import main

_PAUSE_S = 0.3
_fsync = snapshots._fsync


def _slow_fsync(path: Path) -> None:
    if Path(path).name == "snapshot.json":  # once per snapshot, in its fsync loop
        time.sleep(_PAUSE_S)
    _fsync(path)


if __name__ == "__main__":
    snapshots._fsync = _slow_fsync  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
