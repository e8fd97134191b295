"""One job of a sweep end to end: `python -m benchmark.run [hydra overrides]`.

    python -m benchmark.run cell=gru reg=both task=adding task.seq_len=200 seed=1 impl=custom

The Hydra entry point, and the only module that touches Hydra's run (its overrides, its launcher,
the config search path). The job itself is `benchmark.job`: prepare every run of the job (one, or a
cohort's members; `benchmark.job.prepare`), then train and record them (`benchmark.job.cohort_run`,
`benchmark.job.execute`). A bad value raises `ConfigError`: the message is printed and the process
exits 2 before anything is written (in a multirun too: bad input fails loud and leaves results
untouched). A run that fails is recorded as `status: failed`; a single run then exits 1, a job inside
a multirun returns so the sweep goes on. A non-finite loss is `status: diverged` and exits 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from benchmark.core.config import ConfigError
from benchmark.core.io import write_failure
from benchmark.job.cohort_run import run_job
from benchmark.job.launch import launcher_kind, threads_for_job
from benchmark.job.prepare import prepare_job
from benchmark.training import allocator

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as __main__ and as an import


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    allocator.keep_freed_memory()  # steady step times that scale with T (benchmark/training/allocator.py)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        ps = prepare_job(cfg, [str(o) for o in hc.overrides.task])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    launcher = OmegaConf.to_container(hc.launcher, resolve=True) if multirun else None
    threads = threads_for_job(launcher, os.cpu_count() or 1, ps[0].cfg.threads)
    try:
        statuses = run_job(ps, threads, multirun, int(hc.job.get("num", 0) or 0))
    except OSError as e:  # the record could not be written (a full disk): the sweep cannot go on, nothing is lost
        if launcher_kind(launcher) != "basic":  # jobs in workers: the multirun says it once (cohort sweeper)
            raise
        sys.stderr.write(f"error: {write_failure(e)}\n")  # in this process (a single run, the basic launcher)
        sys.exit(1)
    if "failed" in statuses and not multirun:
        sys.exit(1)


if __name__ == "__main__":
    # Call main through the importable module, not __main__: submitit and joblib pickle the
    # task function, and a function of __main__ is pickled by value (dragging torch along).
    from benchmark.run import main as _main

    _main()
