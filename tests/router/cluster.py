"""A sharded linr on loopback, all real processes: the local broker, S shards x R replicas
of `linr serve --partitions ...` (each with its own snapshot directory) and `linr router`.
Replicas can be killed, stopped and restarted; `close()` ends every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from linr.testing.broker import LocalBroker, free_port

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _status(url: str, path: str) -> int | None:
    try:
        return httpx.get(url + path, timeout=2).status_code
    except httpx.HTTPError:
        return None


def wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Replica:
    def __init__(self, cluster: Cluster, shard: int, index: int) -> None:
        self.cluster, self.shard, self.index = cluster, shard, index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.snapshots = cluster.scratch / f"shard{shard}-replica{index}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        c = self.cluster
        cmd = [
            *("-m", "linr", "serve", "--dim", str(c.dim), "--device", "cpu"),
            *("--kafka-bootstrap", c.broker.bootstrap, "--topic", c.topic),
            *("--partitions", ",".join(map(str, c.partitions_of(self.shard)))),
            *("--snapshot-dir", str(self.snapshots), "--snapshot-every-s", "1"),
            *("--port", str(self.port), "--log-level", "warning"),
        ]
        self.proc = subprocess.Popen([sys.executable, *cmd], env=_env(), stderr=c.log, cwd=ROOT)

    def ready(self) -> bool:
        return _status(self.url, "/readyz") == 200

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    def __init__(
        self, scratch: Path, dim: int, shards: int, replicas: int, partitions: int
    ) -> None:
        self.scratch, self.dim, self.topic = scratch, dim, "linr-items"
        self.n_shards, self.n_partitions = shards, partitions
        self.log: IO[bytes] = open(scratch / "processes.log", "ab")  # noqa: SIM115
        self.broker = LocalBroker(scratch)
        self.replicas = [[Replica(self, s, r) for r in range(replicas)] for s in range(shards)]
        self.router_port = free_port()
        self.url = f"http://127.0.0.1:{self.router_port}"
        self.router: subprocess.Popen[bytes] | None = None

    def partitions_of(self, shard: int) -> list[int]:
        """Partitions dealt out in contiguous runs (as deploy/k8s/generate.py does)."""
        per = -(-self.n_partitions // self.n_shards)
        return list(range(shard * per, min((shard + 1) * per, self.n_partitions)))

    def start(self) -> None:
        from ingest.topics import ensure_topic

        self.broker.start()
        ensure_topic(self.broker.bootstrap, self.topic, self.n_partitions)
        for r in self.all_replicas():
            r.start()
        cmd = [sys.executable, "-m", "linr", "router", "--port", str(self.router_port)]
        for shard in self.replicas:
            cmd += ["--shard", ",".join(r.url for r in shard)]
        cmd += ["--kafka-bootstrap", self.broker.bootstrap, "--topic", self.topic]
        # Deadlines and probe timeouts for a shared 2-core machine running all of these
        # processes at once (the tests that are about deadlines give their own).
        cmd += ["--timeout-ms", "5000", "--probe-every-s", "0.25", "--probe-timeout-s", "2"]
        cmd += ["--log-level", "warning"]
        self.router = subprocess.Popen(cmd, env=_env(), stderr=self.log, cwd=ROOT)
        self.wait_ready(120)

    def all_replicas(self) -> list[Replica]:
        return [r for shard in self.replicas for r in shard]

    def produce(self, vectors: Path, attributes: Path) -> None:
        cmd = [sys.executable, "-m", "linr", "produce", str(vectors), "--attributes"]
        cmd += [str(attributes), "--bootstrap", self.broker.bootstrap, "--topic", self.topic]
        subprocess.run(cmd + ["--quiet"], env=_env(), check=True, timeout=120, cwd=ROOT)

    def router_ready(self) -> bool:
        return _status(self.url, "/readyz") == 200

    def wait_ready(self, timeout_s: float) -> None:
        """Every replica ready (caught up with the log) and the router seeing it."""
        for r in self.all_replicas():
            assert r.proc is not None and r.proc.poll() is None, f"replica {r.url} exited"
        wait(lambda: all(r.ready() for r in self.all_replicas()), timeout_s, "replicas ready")
        wait(self.router_ready, 30, "the router ready")

    def close(self) -> None:
        for r in self.all_replicas():
            r.stop()
        if self.router is not None and self.router.poll() is None:
            self.router.terminate()
            try:
                self.router.wait(20)
            except subprocess.TimeoutExpired:
                self.router.kill()
                self.router.wait()
        self.broker.stop()
        self.log.close()
