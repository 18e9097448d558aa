# Everything installs into .venv; `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (a plain `torch` pulls several GB of CUDA packages). On a CUDA host:
#   make install TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
SRC := $(wildcard linr service ingest)
LINT := $(wildcard linr service ingest tests benchmarks)

.PHONY: install test lint format demo bench bench-service bench-ingest bench-scan eval-sample clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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

eval-sample: install
	$(BIN)/python benchmarks/make_sample_report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
