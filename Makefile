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

sweep:  ## Hydra multirun over conf/experiment/$(EXPERIMENT).yaml, then aggregate and report
	$(VPY) -m benchmark.run --multirun +experiment=$(EXPERIMENT) sweep=$(SWEEP) \
		results_dir=$(RESULTS_DIR) force=$(FORCE) hydra/launcher=$(LAUNCHER) $(ARGS)
	$(VPY) -m benchmark.aggregate $(RESULTS_DIR)/$(SWEEP)
	$(VPY) -m benchmark.report $(RESULTS_DIR)/$(SWEEP) --out $(REPORTS_DIR)/$(SWEEP)

report:  ## rebuild the report from existing results
	$(VPY) -m benchmark.aggregate $(RESULTS_DIR)/$(SWEEP)
	$(VPY) -m benchmark.report $(RESULTS_DIR)/$(SWEEP) --out $(REPORTS_DIR)/$(SWEEP)

clean:
	rm -rf .pytest_cache .benchmarks outputs multirun
