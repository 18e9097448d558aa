# Everything installs into .venv; `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (a plain `torch` pulls several GB of CUDA packages). On a CUDA host:
#   make install TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
# `make gpu-compile TRITON_VERSION=3.6.0` (and test-kernels) use a separate venv with that
# Triton, and numpy<2.4, which the 3.6 interpreter needs; empty: .venv's (the latest).
TRITON_VERSION ?=
KVENV := $(if $(TRITON_VERSION),.venv-triton-$(TRITON_VERSION),$(VENV))
SRC := $(wildcard linr service ingest)
LINT := $(wildcard linr service ingest tests benchmarks deploy)

.PHONY: install test test-kernels gpu-compile lint format demo bench bench-service bench-ingest \
	bench-scan bench-router eval-sample k8s-tools k8s-manifests clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

.venv-triton-%/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-triton-$*
	.venv-triton-$*/bin/pip install -q --upgrade pip
	.venv-triton-$*/bin/pip install -q $(TORCH) "triton==$*" "numpy<2.4" pytest pytest-timeout -e .
	touch $@

# The kernel tests need TRITON_INTERPRET=1 set before Triton is imported: their own process.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-kernels

test-kernels: $(KVENV)/.installed
	TRITON_INTERPRET=1 $(KVENV)/bin/python -m pytest tests/ops $(PYTEST_ARGS)

# Compile every kernel variant for sm_90 (H100/H200) without a GPU; see docs/gpu.md.
gpu-compile: $(KVENV)/.installed
	$(KVENV)/bin/python -m linr.ops.aot

lint: install
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)
	$(BIN)/mypy $(SRC)

format: install
	$(BIN)/ruff check --fix $(LINT)
	$(BIN)/ruff format $(LINT)

demo: install
	$(BIN)/linr demo

bench: install
	$(BIN)/python benchmarks/bench_search.py

bench-service: install
	$(BIN)/python benchmarks/bench_service.py

bench-ingest: install
	$(BIN)/python benchmarks/bench_ingest.py

bench-scan: install
	$(BIN)/python benchmarks/bench_scan.py

bench-router: install
	$(BIN)/python benchmarks/bench_router.py

# kubectl renders deploy/k8s (tests/deploy); Debian ships it as kubernetes-client. Needs root
# (CI has it) when kubectl is missing.
k8s-tools:
	command -v kubectl >/dev/null || (apt-get update -qq && apt-get install -y -qq kubernetes-client)

# Manifests for S shards x R replicas over P partitions, GPU and CPU-only, in $(K8S_OUT):
#   make k8s-manifests S=4 R=2 P=16 && kubectl apply -f build/k8s/gpu.yaml
S ?= 2
R ?= 2
P ?= 8
K8S_OUT ?= build/k8s
k8s-manifests: k8s-tools
	rm -rf $(K8S_OUT) && mkdir -p $(K8S_OUT)
	$(PYTHON) deploy/k8s/generate.py --shards $(S) --replicas $(R) --partitions $(P) --out $(K8S_OUT)
	kubectl kustomize $(K8S_OUT)/base > $(K8S_OUT)/gpu.yaml
	kubectl kustomize $(K8S_OUT)/overlays/cpu > $(K8S_OUT)/cpu.yaml
	@echo "wrote $(K8S_OUT)/gpu.yaml and $(K8S_OUT)/cpu.yaml ($(S) shards x $(R) replicas, $(P) partitions)"

eval-sample: install
	$(BIN)/python benchmarks/make_sample_report.py

clean:
	rm -rf $(VENV) .venv-triton-* .pytest_cache .mypy_cache .ruff_cache .hypothesis
