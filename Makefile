# rnn-ablation-bench: the commands users run. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# The CPU build lies on the CPU machines; on a GPU box an importable CUDA torch is kept.
TORCH_VERSION ?= 2.13.0

EXPERIMENT ?= $(shell $(VPY) -c "import torch; print('full' if torch.cuda.is_available() else 'quick')" 2>/dev/null || echo quick)
SWEEP ?= $(EXPERIMENT)
LAUNCHER ?= basic
RESULTS_DIR ?= results
REPORTS_DIR ?= reports
FORCE ?= 0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup test test-all sweep report bench bench-check bench-baseline bench-gpu browser clean

setup:  ## create .venv (sees system site-packages, so a CUDA torch already installed is kept)
	test -x $(VPY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install "torch==$(TORCH_VERSION)"
	$(VPY) -m pip install -e ".[test]"
	$(VPY) -c "import torch, benchmark; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"

test:  ## the test suite (fast tests; slow ones with `make test-all`)
	$(VPY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all:
	$(VPY) -m pytest $(PYTEST_ARGS)

# The sweep's log is also kept in a temp file to count the grid points it skipped (one
# "skipping complete run" line each; with submitit launchers those lines are in the job logs).
sweep:  ## Hydra multirun over conf/experiment/$(EXPERIMENT).yaml, then aggregate and report; prints the report path
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; set -o pipefail; \
	$(VPY) -m benchmark.run --multirun +experiment=$(EXPERIMENT) sweep=$(SWEEP) \
		results_dir=$(RESULTS_DIR) force=$(FORCE) hydra/launcher=$(LAUNCHER) $(ARGS) 2>&1 | tee "$$log" && \
	echo "sweep: skipped $$(grep -c 'skipping complete run' "$$log") grid point(s) already complete (FORCE=1 reruns them)"
	$(VPY) -m benchmark.aggregate $(RESULTS_DIR)/$(SWEEP)
	$(VPY) -m benchmark.report $(RESULTS_DIR)/$(SWEEP) --out $(REPORTS_DIR)/$(SWEEP)

report:  ## rebuild the report from existing results
	$(VPY) -m benchmark.aggregate $(RESULTS_DIR)/$(SWEEP)
	$(VPY) -m benchmark.report $(RESULTS_DIR)/$(SWEEP) --out $(REPORTS_DIR)/$(SWEEP)

# --- step-time benchmarks (tests/bench; README "Timing benchmarks and regression checks") ---
BENCH_DIR ?= results/bench
BENCH_BASELINE ?= benchmark/baselines/cpu.json
BENCH_TOLERANCE ?= 0.25
BENCH_ARGS ?=
BENCH_PYTEST = $(VPY) -m pytest tests/bench/bench_step.py -q --benchmark-columns=median,iqr,min,rounds
# The CI subset: T=50, one thread (2 OpenMP threads on a shared 2-core runner make the ratios
# follow co-tenant load; see README); the baseline is taken with the same subset (more rounds).
BENCH_FAST = --bench-seq-lens=50 --bench-rounds=20 --bench-threads=1
BENCH_CHECK = $(VPY) -m benchmark.bench_check --baseline $(BENCH_BASELINE) --tolerance $(BENCH_TOLERANCE)

bench:  ## every cell × reg × impl at T=50 and T=200 -> results/bench/bench.json (a few minutes)
	mkdir -p $(BENCH_DIR)
	$(BENCH_PYTEST) --benchmark-json=$(BENCH_DIR)/bench.json $(BENCH_ARGS)

bench-check:  ## the fast subset vs the committed baseline of ratios; exit 1 on a regression
	mkdir -p $(BENCH_DIR)
	rm -f $(BENCH_DIR)/bench-check-confirm.json
	$(BENCH_PYTEST) $(BENCH_FAST) --benchmark-json=$(BENCH_DIR)/bench-check.json $(BENCH_ARGS)
	$(BENCH_CHECK) $(BENCH_DIR)/bench-check.json || { rc=$$?; [ $$rc -eq 1 ] || exit $$rc; \
		echo "bench-check: re-measuring once; a regression must show in both runs"; \
		$(BENCH_PYTEST) $(BENCH_FAST) --benchmark-json=$(BENCH_DIR)/bench-check-confirm.json $(BENCH_ARGS) && \
		$(BENCH_CHECK) $(BENCH_DIR)/bench-check.json $(BENCH_DIR)/bench-check-confirm.json; }

bench-baseline:  ## rewrite $(BENCH_BASELINE) on purpose, from the bench-check subset
	mkdir -p $(BENCH_DIR)
	$(BENCH_PYTEST) $(BENCH_FAST) --bench-rounds=40 --benchmark-json=$(BENCH_DIR)/bench-baseline.json $(BENCH_ARGS)
	$(VPY) -m benchmark.bench_check $(BENCH_DIR)/bench-baseline.json --baseline $(BENCH_BASELINE) --write-baseline

# --- GPU throughput vs cuDNN (benchmark/gpu_bench.py; README "GPU performance") ---
GPU_BENCH_ARGS ?=

bench-gpu:  ## custom loop vs cuDNN, fwd and fwd+bwd ratios -> results/bench/gpu.json; prints "skipped" and exits 0 without CUDA
	$(VPY) -m benchmark.gpu_bench --out $(BENCH_DIR)/gpu.json $(GPU_BENCH_ARGS)

clean:
	rm -rf .pytest_cache .benchmarks outputs multirun
