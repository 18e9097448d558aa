"""`linr produce` and `linr demo` from the command line."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from linr.cli.main import main
from tests.ingest.conftest import Broker, free_port, read_topic

ROOT = Path(__file__).resolve().parents[2]


def write_items(tmp_path: Path, n: int, d: int) -> tuple[Path, Path, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    vec = tmp_path / "items.npy"
    np.save(vec, x)
    attrs = tmp_path / "attrs.jsonl"
    lines = [json.dumps({"lang": "en" if i % 2 else "fr"}) + "\n" for i in range(n)]
    attrs.write_text("".join(lines))
    return vec, attrs, x


def test_produce_b64_with_attributes_and_string_ids(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    vec, attrs, x = write_items(tmp_path, 30, 7)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"item-{i}\n" for i in range(30)))
    argv = ["produce", str(vec), "--attributes", str(attrs), "--ids", str(ids)]
    assert main([*argv, "--bootstrap", broker.bootstrap, "--topic", topic, "--quiet"]) == 0
    msgs = read_topic(broker.bootstrap, topic, 30)
    assert len(msgs) == 30
    for m in msgs:
        body = json.loads(m.value)
        i = int(body["id"].split("-")[1])
        assert m.key == f"item-{i}".encode() and body["op"] == "upsert"
        got = np.frombuffer(base64.b64decode(body["vector_b64"]), "<f4")
        np.testing.assert_array_equal(got, x[i])
        assert body["attributes"] == {"lang": "en" if i % 2 else "fr"}


def test_produce_json_rate_limit_and_deletes(broker: Broker, topic: str, tmp_path: Path) -> None:
    vec, _, x = write_items(tmp_path, 200, 4)
    deletes = tmp_path / "deleted.txt"
    t = time.perf_counter()
    rc = main(
        ["produce", str(vec), "--bootstrap", broker.bootstrap, "--topic", topic, "--quiet"]
        + ["--format", "json", "--rate", "1000", "--delete-fraction", "0.25"]
        + ["--deletes-out", str(deletes), "--seed", "3"]
    )
    took = time.perf_counter() - t
    assert rc == 0
    deleted = [int(s) for s in deletes.read_text().split()]
    assert 20 < len(deleted) < 80
    n_msgs = 200 + len(deleted)
    assert took >= 0.9 * n_msgs / 1000  # held to --rate
    msgs = read_topic(broker.bootstrap, topic, n_msgs)
    tombstones = sorted(int(m.key) for m in msgs if m.value is None)
    assert tombstones == sorted(deleted)
    for m in msgs:
        if m.value is not None:
            body = json.loads(m.value)
            np.testing.assert_array_equal(np.float32(body["vector"]), x[body["id"]])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delete-fraction", "2"], "between 0 and 1"),
        (["--rate", "0"], "not a positive number"),
        (["--format", "xml"], "invalid choice"),
    ],
)
def test_produce_bad_usage_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    vec, _, _ = write_items(tmp_path, 3, 4)
    rc = main(["produce", str(vec), "--bootstrap", "127.0.0.1:1", *args])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_produce_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["produce", str(tmp_path / "nope.fbin"), "--bootstrap", "127.0.0.1:1"])
    assert rc == 2
    assert "nope.fbin" in capsys.readouterr().err


def test_produce_unreachable_broker_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vec, _, _ = write_items(tmp_path, 3, 4)
    port = free_port()
    rc = main(["produce", str(vec), "--bootstrap", f"127.0.0.1:{port}", "--connect-timeout", "1"])
    assert rc == 1
    assert "cannot use Kafka" in capsys.readouterr().err


def test_demo_runs_end_to_end(broker: Broker) -> None:
    """The demo against the session's broker (its own local broker is the same code path as
    this fixture's), briefly: it streams, searches with filters while items arrive, stops."""
    cmd = [sys.executable, "-m", "linr", "demo", "--duration", "3", "--items", "3000"]
    cmd += ["--rate", "1500", "--dim", "16", "--bootstrap", broker.bootstrap]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "streaming stopped; the index has caught up" in text
    assert 'lang == "fr"' in text and "JSON form" in text
    assert "score" in text and "dead letters 0" in text
