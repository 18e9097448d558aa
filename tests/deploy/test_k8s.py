"""deploy/k8s: the kustomize base and the CPU overlay render with `kubectl kustomize` and
validate against the Kubernetes schemas (kubernetes-validate), and what they wire up is
consistent: every partition read by exactly one shard, the router pointed at every replica,
GPUs requested (none in the CPU overlay), probes on /readyz and /healthz, disruption budgets.
kubectl comes from `make k8s-tools` (CI runs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.router.settings import RouterSettings
from service.settings import Settings

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
READ = {f"LINR_{n.upper()}" for n in (*Settings.model_fields, *RouterSettings.model_fields)}
KUBERNETES = "1.31.0"  # the oldest minor release still supported upstream as of 2026-12


def _kustomize(path: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: run `make k8s-tools` (CI does)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(K8S / "generate.py"), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _sizes(s: int, r: int, p: int) -> list[str]:
    return ["--shards", str(s), "--replicas", str(r), "--partitions", str(p)]


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _check(docs: list[dict[str, Any]], shards: int, replicas: int, partitions: int, gpu: bool):
    for d in docs:
        kubernetes_validate.validate(d, KUBERNETES, strict=True)
    maps = _kind(docs, "ConfigMap")
    shard_map, settings = maps["linr-shards"]["data"], maps["linr-settings"]["data"]
    assert set(settings) <= READ, sorted(set(settings) - READ)
    assert settings["LINR_DEVICE"] == ("cuda" if gpu else "cpu")
    Settings(**{k[5:].lower(): v for k, v in settings.items()})  # values the service takes

    sets, services = _kind(docs, "StatefulSet"), _kind(docs, "Service")
    pdbs = _kind(docs, "PodDisruptionBudget")
    assert len(sets) == shards
    seen: list[int] = []
    urls = []
    for name, sts in sets.items():
        spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
        assert spec["replicas"] == replicas
        (c,) = pod["containers"]
        env = {e["name"]: e for e in c.get("env", [])}
        key = env["LINR_PARTITIONS"]["valueFrom"]["configMapKeyRef"]
        assert key["name"] == "linr-shards" and key["key"] == name
        mine = [int(p) for p in shard_map[name].split(",")]
        seen += mine
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        gpus = {k: v.get("nvidia.com/gpu") for k, v in c["resources"].items()}
        assert gpus == ({"requests": 1, "limits": 1} if gpu else {"requests": None, "limits": None})
        (claim,) = spec["volumeClaimTemplates"]
        mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mount[claim["metadata"]["name"]] == settings["LINR_SNAPSHOT_DIR"]
        svc = services[spec["serviceName"]]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert svc["clusterIP"] == "None" and svc["selector"] == labels
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == labels
        host = f"{spec['serviceName']}:{settings['LINR_PORT']}"
        urls.append([f"http://{name}-{i}.{host}" for i in range(replicas)])
    # Every partition read by exactly one shard; shards differ by at most one partition.
    assert sorted(seen) == list(range(partitions))
    sizes = [len(shard_map[n].split(",")) for n in sets]
    assert max(sizes) - min(sizes) <= 1

    router = _kind(docs, "Deployment")["linr-router"]["spec"]["template"]["spec"]
    (c,) = router["containers"]
    assert c["command"] == ["linr", "router"]
    ref = {e["name"]: e for e in c["env"]}["LINR_SHARDS"]["valueFrom"]["configMapKeyRef"]
    assert RouterSettings(shards=shard_map[ref["key"]]).shards == urls
    assert "linr-router" in services and "linr-router" in pdbs


def _committed_args() -> list[str]:
    header = (K8S / "base" / "kustomization.yaml").read_text().splitlines()[0]
    return header.split("generate.py", 1)[1].split()


def _yamls(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): f.read_text() for f in sorted(root.rglob("*.yaml"))}


def test_committed_base_and_cpu_overlay() -> None:
    words = _committed_args()
    sizes = [int(words[words.index(f"--{w}") + 1]) for w in ("shards", "replicas", "partitions")]
    _check(_kustomize(K8S / "base"), *sizes, gpu=True)
    _check(_kustomize(K8S / "overlays" / "cpu"), *sizes, gpu=False)


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    gen = _generate(tmp_path, *_committed_args())
    assert gen.returncode == 0, gen.stderr
    assert _yamls(tmp_path) == _yamls(K8S)


@pytest.mark.parametrize(("shards", "replicas", "partitions"), [(3, 2, 7), (1, 1, 1), (5, 3, 64)])
def test_generated_bases(tmp_path: Path, shards: int, replicas: int, partitions: int) -> None:
    gen = _generate(tmp_path, *_sizes(shards, replicas, partitions))
    assert gen.returncode == 0, gen.stderr
    _check(_kustomize(tmp_path / "base"), shards, replicas, partitions, gpu=True)
    _check(_kustomize(tmp_path / "overlays" / "cpu"), shards, replicas, partitions, gpu=False)


@pytest.mark.parametrize("sizes", [(0, 1, 4), (2, 0, 4), (4, 2, 3)])
def test_generator_refuses_bad_sizes(tmp_path: Path, sizes: tuple[int, int, int]) -> None:
    out = _generate(tmp_path, *_sizes(*sizes))
    assert out.returncode == 2
    assert "must be at least 1" in out.stderr or "would be empty" in out.stderr
