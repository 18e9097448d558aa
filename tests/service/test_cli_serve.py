"""`linr serve` as a user runs it: a subprocess, flags and LINR_* variables, bad usage
(exit 2, one line), and a clean SIGTERM shutdown that writes the final snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from svc_helpers import wait_until

from linr.cli.main import main
from linr.testing.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _linr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linr", *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        ((), {}, "--dim"),
        (("--port", "eighty"), {"LINR_DIM": "4"}, "--port"),
        (("--dim", "4"), {"LINR_METRIC": "manhattan"}, "LINR_METRIC"),
        (("/no/such/index",), {}, "does not exist"),
        (("--dim", "0"), {}, "--dim"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    args: tuple[str, ...],
    env: dict[str, str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in [k for k in os.environ if k.startswith("LINR_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", *args]) == 2  # in-process: nothing is served, nothing starts
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


def test_not_an_index_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_help_lists_every_setting_and_its_variable() -> None:
    r = _linr("serve", "--help")  # the real console entry point, in a subprocess
    assert r.returncode == 0
    for flag in (
        "--kafka-bootstrap",
        "--snapshot-dir",
        "--api-key",
        "--batch-window-ms",
        "LINR_KAFKA_BOOTSTRAP",
        "--max-queue",
        "INDEX_DIR",
        "--schema",
    ):
        assert flag in r.stdout


def test_serve_from_env_and_flags_then_sigterm_snapshots(tmp_path: Path) -> None:
    pytest.importorskip("ingest.snapshots")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "linr", "serve", "--port", str(port), "--log-level", "warning"],
        env=_env(
            LINR_DIM="3", LINR_API_KEY="k1", LINR_SNAPSHOT_DIR=str(tmp_path), LINR_PORT="1"
        ),  # the flag wins over the variable
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer k1"}

    def ready() -> bool:
        try:
            return httpx.get(url + "/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout_s=60, what="linr serve ready")
        assert httpx.get(url + "/v1/stats").status_code == 401
        r = httpx.put(url + "/v1/items/9", json={"vector": [1, 2, 3]}, headers=auth)
        assert r.json() == {"id": 9, "created": True, "applied": True}
        assert httpx.get(url + "/v1/stats", headers=auth).json()["dim"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    snaps = sorted(p.name for p in tmp_path.iterdir())
    assert snaps == ["snap-0000000001"], snaps


def test_a_snapshot_dir_that_cannot_be_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for d in (a_file, a_file / "below"):
        assert main(["serve", "--dim", "4", "--snapshot-dir", str(d)]) == 2
        err = capsys.readouterr().err.strip()
        assert "--snapshot-dir" in err and len(err.splitlines()) == 1, err
