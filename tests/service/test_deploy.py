"""What can be checked of the deployment files without a Docker engine: they parse, and
every LINR_* variable they set is one the service reads (a typo would be silently ignored)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
READ = {f"LINR_{name.upper()}" for name in Settings.model_fields}


def _compose(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / name).read_text())
    return doc


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_wires_kafka_and_the_service() -> None:
    doc = _compose("docker-compose.yml")
    services = doc["services"]
    kafka, linr = services["kafka"], services["linr"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = _env(kafka)
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    env = _env(linr)
    assert set(env) <= READ, f"unknown to the service: {sorted(set(env) - READ)}"
    host, port = env["LINR_KAFKA_BOOTSTRAP"].split(":")
    assert host == "kafka" and f"INTERNAL://kafka:{port}" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert env["LINR_SNAPSHOT_DIR"] in {v.split(":")[1] for v in linr["volumes"]}
    assert env["LINR_HOST"] == "0.0.0.0" and f"{env['LINR_PORT']}:" in linr["ports"][0]
    assert linr["build"]["context"] == ".." and (ROOT / linr["build"]["dockerfile"]).is_file()
    # The topic the init job creates is the one the service reads.
    init = " ".join(services["kafka-init"]["command"])
    assert f"--topic {env['LINR_TOPIC']} " in init and f"--topic {env['LINR_TOPIC']}.dlq" in init


def test_compose_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(_compose("docker-compose.yml")["services"]["linr"])
    for key, value in env.items():
        # "${LINR_DIM:-128}": what compose substitutes when the variable is not set.
        m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
        monkeypatch.setenv(key, m.group(1) if m else value)
    s = Settings()
    assert s.kafka_bootstrap == "kafka:9092" and s.api_key is None and s.dim == 128


def test_gpu_override_only_adds_a_device() -> None:
    doc = _compose("docker-compose.gpu.yml")
    linr = doc["services"]["linr"]
    assert set(_env(linr)) <= READ
    devices = linr["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_dockerfile_sets_only_variables_the_service_reads() -> None:
    text = (ROOT / "Dockerfile").read_text()
    set_vars = set(re.findall(r"\b(LINR_[A-Z_]+)=", text))
    assert set_vars and set_vars <= READ, sorted(set_vars - READ)
    assert re.search(r"^USER linr$", text, re.M), "must run as a non-root user"
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r'^ENTRYPOINT \["linr", "serve"\]$', text, re.M)
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}$", text, re.M)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-", text, re.M)
    # Every directory the image copies exists (a stale path would break `docker build`).
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
