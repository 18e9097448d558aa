#!/usr/bin/env python3
"""Generate the kustomize base of a sharded linr: S shards x R replicas over P partitions.

    python deploy/k8s/generate.py --shards 3 --replicas 2 --partitions 12 --out my-k8s
    kubectl kustomize my-k8s/base | kubectl apply -f -      (my-k8s/overlays/cpu: no GPUs)

(or `make k8s-manifests S=3 R=2 P=12`, which renders both into build/k8s).

Writes, for each shard, a StatefulSet (R replicas of `linr serve --partitions ...`, one GPU
and a PersistentVolumeClaim for snapshots each, probes on /readyz and /healthz), a headless
Service and a PodDisruptionBudget; the router as a Deployment with a Service; a ConfigMap
`linr-shards` mapping each shard to its partitions (and the router to the replicas' DNS
names), and a ConfigMap `linr-settings` with the settings all of them share. Partitions are
dealt out in contiguous runs, as equal as P / S allows. Only the standard library is needed.
See docs/scaling.md for choosing S, R and P; deploy/k8s/README.md for the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PORT = 8080
SNAPSHOTS = "/var/lib/linr"


def partitions_of(shard: int, shards: int, partitions: int) -> list[int]:
    """Shard `shard`'s partitions: contiguous runs, the first P % S shards one longer."""
    base, extra = divmod(partitions, shards)
    start = shard * base + min(shard, extra)
    return list(range(start, start + base + (shard < extra)))


def _yaml(obj: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (strings as JSON strings, valid YAML)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = ""
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + _yaml(v, indent + 1)
            else:
                out += f"{pad}{k}: {_scalar(v)}\n"
        return out
    if isinstance(obj, list):
        out = ""
        for v in obj:
            body = _yaml(v, indent + 1) if isinstance(v, (dict, list)) and v else None
            out += f"{pad}- {_scalar(v)}\n" if body is None else f"{pad}-{body[len(pad) + 1 :]}"
        return out
    return pad + _scalar(obj) + "\n"


def _scalar(v: Any) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(v)


def _docs(*docs: dict[str, Any]) -> str:
    return "---\n".join(_yaml(d) for d in docs)


def _labels(component: str, shard: int | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "linr", "app.kubernetes.io/component": component}
    if shard is not None:
        out["linr.dev/shard"] = str(shard)
    return out


def _probes() -> dict[str, Any]:
    http = {"port": "http"}
    return {
        # Ready only once the replica has loaded its snapshot and caught up with the log.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **http},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # /healthz answers while a large index is still loading: restarts only a hung process.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **http},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


def _api_key_env() -> dict[str, Any]:
    ref = {"name": "linr-api-key", "key": "api-key", "optional": True}
    return {"name": "LINR_API_KEY", "valueFrom": {"secretKeyRef": ref}}


def shard_docs(shard: int, replicas: int) -> str:
    name = f"linr-shard-{shard}"
    labels = _labels("shard", shard)
    container = {
        "name": "linr",
        "image": "linr:latest",  # its entry point is `linr serve`; settings are LINR_*
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": [{"configMapRef": {"name": "linr-settings"}}],
        "env": [
            {
                "name": "LINR_PARTITIONS",
                "valueFrom": {"configMapKeyRef": {"name": "linr-shards", "key": name}},
            },
            _api_key_env(),
        ],
        "resources": {
            "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": 1},
            "limits": {"memory": "48Gi", "nvidia.com/gpu": 1},
        },
        **_probes(),
        "volumeMounts": [{"name": "snapshots", "mountPath": SNAPSHOTS}],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            # Replicas of a shard are independent copies: start and replace them together.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Time for the final snapshot of a large index on SIGTERM.
                    "terminationGracePeriodSeconds": 120,
                    "securityContext": {"runAsUser": 10001, "fsGroup": 10001},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    # Replicas of one shard on different nodes, so one lost node leaves one.
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": labels},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "snapshots"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "100Gi"}},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            # Headless: one DNS name per replica (linr-shard-0-1.linr-shard-0), which the
            # router probes itself; listed before they are ready so it can see them come up.
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    }
    return _docs(statefulset, service, pdb)


def router_docs(routers: int) -> str:
    labels = _labels("router")
    container = {
        "name": "router",
        "image": "linr:latest",
        "command": ["linr", "router"],
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": [{"configMapRef": {"name": "linr-settings"}}],
        "env": [
            {
                "name": "LINR_SHARDS",
                "valueFrom": {"configMapKeyRef": {"name": "linr-shards", "key": "router"}},
            },
            _api_key_env(),
        ],
        "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        **_probes(),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "linr-router", "labels": labels},
        "spec": {
            "replicas": routers,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"securityContext": {"runAsUser": 10001}, "containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "linr-router", "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "linr-router", "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    }
    return _docs(deployment, service, pdb)


def config_docs(shards: int, replicas: int, partitions: int, args: argparse.Namespace) -> str:
    mapping = {
        f"linr-shard-{s}": ",".join(map(str, partitions_of(s, shards, partitions)))
        for s in range(shards)
    }
    mapping["router"] = ";".join(
        ",".join(f"http://linr-shard-{s}-{r}.linr-shard-{s}:{PORT}" for r in range(replicas))
        for s in range(shards)
    )
    shard_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "linr-shards", "labels": _labels("config")},
        "data": mapping,
    }
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "linr-settings", "labels": _labels("config")},
        "data": {
            "LINR_HOST": "0.0.0.0",
            "LINR_PORT": str(PORT),
            "LINR_DIM": str(args.dim),
            "LINR_METRIC": args.metric,
            "LINR_QUANTIZATION": args.quantization,
            "LINR_DEVICE": "cuda",  # the one GPU the pod requests; overlays/cpu: cpu
            "LINR_KAFKA_BOOTSTRAP": args.kafka_bootstrap,
            "LINR_TOPIC": args.topic,
            "LINR_SNAPSHOT_DIR": SNAPSHOTS,
        },
    }
    return _docs(shard_map, settings)


_CPU_PATCH = [
    {"op": "remove", "path": "/spec/template/spec/containers/0/resources/requests/nvidia.com~1gpu"},
    {"op": "remove", "path": "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"},
    {"op": "remove", "path": "/spec/template/spec/tolerations"},
]


def cpu_overlay(shards: int) -> dict[str, str]:
    """overlays/cpu: no GPU requests or tolerations, LINR_DEVICE=cpu. Written in the fields
    every kustomize reads (`bases`, `patchesJson6902` named per StatefulSet), down to the
    v2.0 inside Debian's kubectl 1.20; newer ones warn that these are deprecated."""
    statefulsets = [
        {"group": "apps", "version": "v1", "kind": "StatefulSet", "name": f"linr-shard-{i}"}
        for i in range(shards)
    ]
    targets = [{"target": t, "path": "no-gpu.yaml"} for t in statefulsets]
    targets.append(
        {
            "target": {"version": "v1", "kind": "ConfigMap", "name": "linr-settings"},
            "path": "device-cpu.yaml",
        }
    )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "bases": ["../../base"],
        "patchesJson6902": targets,
    }
    device = [{"op": "replace", "path": "/data/LINR_DEVICE", "value": "cpu"}]
    return {
        "kustomization.yaml": _yaml(kustomization),
        "no-gpu.yaml": _yaml(_CPU_PATCH),
        "device-cpu.yaml": _yaml(device),
    }


def generate(args: argparse.Namespace) -> dict[str, str]:
    """Path (under --out) -> content: base/ and overlays/cpu/."""
    s, r, p = args.shards, args.replicas, args.partitions
    files = {f"base/shard-{i}.yaml": shard_docs(i, r) for i in range(s)}
    files["base/router.yaml"] = router_docs(args.routers)
    files["base/config.yaml"] = config_docs(s, r, p, args)
    files["base/kustomization.yaml"] = _yaml(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["config.yaml", *[f"shard-{i}.yaml" for i in range(s)], "router.yaml"],
        }
    )
    files.update({f"overlays/cpu/{n}": text for n, text in cpu_overlay(s).items()})
    header = f"# Generated by deploy/k8s/generate.py {' '.join(args.argv)}\n"
    return {name: header + text for name, text in files.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shards", type=int, required=True, help="S: shards")
    ap.add_argument("--replicas", type=int, required=True, help="R: replicas of each shard")
    ap.add_argument("--partitions", type=int, required=True, help="P: partitions of the topic")
    ap.add_argument("--routers", type=int, default=2, help="router replicas (default 2)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--metric", default="ip", choices=("ip", "cosine", "l2"))
    ap.add_argument("--quantization", default="fp16")
    ap.add_argument("--kafka-bootstrap", default="kafka:9092")
    ap.add_argument("--topic", default="linr-items")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT/base, OUT/overlays/cpu")
    args = ap.parse_args(argv)
    # The header of every file: the sizes and settings it was made with (not where to).
    given = list(sys.argv[1:] if argv is None else argv)
    args.argv = [a for i, a in enumerate(given) if "--out" not in (a, given[i - 1] if i else "")]
    for flag in ("shards", "replicas", "routers", "dim"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be at least 1")
    if args.partitions < args.shards:
        ap.error(f"--partitions {args.partitions} < --shards {args.shards}: a shard would be empty")
    for name, text in generate(args).items():
        (args.out / name).parent.mkdir(parents=True, exist_ok=True)
        (args.out / name).write_text(text)
    print(f"wrote {args.out}/ ({args.shards} shards x {args.replicas} replicas)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
