# Each target sets itself up on a fresh machine: a virtual environment in .venv, the package
# installed in it, and the local services started when they are down.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Triton for tests and `make triton`: pytriton needs numpy<2, so it has an environment of its own.
TRITON_STAMP := .venv-triton/.installed
# rembg's own CLI, for the benchmarks that race it (and their smoke tests); pins of its own too.
REMBG_STAMP := bench/.venv-rembg/.installed

.PHONY: help venv services demo test lint triton triton-venv bench-ledger bench-rembg bench-fidelity bench-orchestration bench-end-to-end bench-intake bench-soak bench-chaos fuzz-api quality-baseline clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,train]'
	# Compile pymatting's numba kernels once (clean and refined edges; over a minute when cold).
	$(BIN)/python -c 'from pipeline.imaging.edges import warm; warm()'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install Clipline with its test tools

$(TRITON_STAMP): scripts/triton-venv.sh
	./scripts/triton-venv.sh
	touch $(TRITON_STAMP)

triton-venv: $(TRITON_STAMP)  ## create .venv-triton: Triton from nvidia-pytriton, with ONNX Runtime

$(REMBG_STAMP): scripts/rembg-venv.sh
	./scripts/rembg-venv.sh
	touch $(REMBG_STAMP)

services:  ## start PostgreSQL and Redis on 127.0.0.1 if they are down
	./scripts/services.sh

demo: venv  ## run the embedded demo (SQLite, local folders, ONNX Runtime)
	$(BIN)/clipline demo

test: venv $(TRITON_STAMP) $(REMBG_STAMP) services  ## lint and type-check, then every test against the real services
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

triton: venv $(TRITON_STAMP)  ## serve every served model (CLIPLINE_SERVED_MODELS, else CLIPLINE_MODEL) on a local Triton (127.0.0.1:8001 gRPC) for CLIPLINE_SEGMENTER=triton
	for model in $$($(BIN)/python -c 'from pipeline.settings import Settings; print(*Settings().served)'); do \
	  $(BIN)/clipline models pull $$model || exit 1; \
	done
	$(BIN)/clipline triton serve

FUZZ_EXAMPLES ?= 2000
FUZZ_STEPS    ?= 30
fuzz-api: venv services  ## schemathesis on every operation and chains of them, deeper, with a fresh seed (printed)
	CLIPLINE_FUZZ_SEED=$${CLIPLINE_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	CLIPLINE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CLIPLINE_FUZZ_STEPS=$(FUZZ_STEPS) HYPOTHESIS_PROFILE=fuzz \
	$(BIN)/pytest -p no:cacheprovider -s -x tests/integration/test_api_schema.py -k "not once_failed"

lint: venv  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

bench-ledger: venv services  ## the ledger benchmark on PostgreSQL (see docs/PERFORMANCE.md)
	$(BIN)/python bench/ledger.py

bench-orchestration: venv services  ## jobs/s per worker process: ledger + Celery + Redis, no model
	$(BIN)/python -m bench.orchestration --jobs 5000 --processes 1

bench-end-to-end: venv $(TRITON_STAMP) services  ## images/s: S3 + Celery + Triton vs the same model in process
	$(BIN)/python -m bench.end_to_end --count 60

bench-intake: venv services  ## a 1,000,000-line manifest through POST /v1/batches until queued
	$(BIN)/python -m bench.intake --lines 1000000 --until queued

bench-soak: venv services  ## RSS of one worker process over 10,000 jobs (ledger + Celery + Redis, no model)
	$(BIN)/python -m bench.soak --jobs 10000

bench-chaos: venv $(TRITON_STAMP)  ## 1,000 jobs through SIGKILLs, a Redis flush, a PostgreSQL restart, Triton down 5 min (own services)
	$(BIN)/python -m bench.chaos --jobs 1000 --triton-outage 300

QUALITY_WORK ?= .cache/quality-gate
quality-baseline: venv  ## rebuild tests/quality/baseline.json (CI's quality gate) after looking at the sheets
	$(BIN)/clipline models pull u2netp
	rm -rf $(QUALITY_WORK) && ./scripts/quality-gate-set.sh $(QUALITY_WORK)
	CLIPLINE_SEGMENTER=onnx $(BIN)/clipline eval $(QUALITY_WORK)/ci-gate --model u2netp --out $(QUALITY_WORK)/eval
	cp $(QUALITY_WORK)/eval/report.json tests/quality/baseline.json

bench-rembg: venv $(REMBG_STAMP)  ## clipline run vs rembg p, same model and images (builds bench/.venv-rembg once)
	$(BIN)/python -m bench.vs_rembg

bench-fidelity: venv $(REMBG_STAMP)  ## u2netp through clipline vs the U2-Net authors' own results
	$(BIN)/python -m bench.fidelity --rembg

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .venv-triton bench/.venv-rembg .pytest_cache .ruff_cache .mypy_cache
