"""A GPU sweep's wall time from measured cohort costs: `python -m benchmark.perf.estimate EXPERIMENT` (`make estimate`).

What the GPU experiments' files state (conf/experiment/full.yaml, claims_gpu.yaml; an experiment of the user's own
folder with `-- hydra.searchpath=[file://$PWD/conf]`, read as its runs read it) is what this prints. A sweep
on one GPU is its cohort jobs one after another; a job with S steps, evaluated every `eval_interval` steps, costs

    capture + S x step_ms(T) + evaluations x eval_ms(T) + overhead(T)

- step_ms, eval_ms, capture: `benchmark.perf.gpu_cohort` rows with accel=graph (the cohort's step as a CUDA-graph
  replay, one stacked evaluation of every member, the capture), for the job's cell and arm, at the measured
  shape nearest the experiment's (hidden, batch), linear in T between the measured lengths (and beyond them
  along the nearest segment). At these sizes a step is launch-bound: 15 or 20 members cost about what one
  does, so the member count of a job is not a factor;
- overhead(T) = a + b*T: everything a job does besides its steps and evaluations (building and probing every
  member, final metrics, the dedicated timing), fitted to whole cohort jobs of `full` timed on the same GPU;
- S: the run's whole step budget. Runs that stop at the target cost less: the estimate is an upper bound.

The costs come from benchmark/baselines/gpu_cohort_h200.json, read by benchmark/perf/costs.py (an H200: the H100's
processor with faster memory; launch-bound steps cost about the same on both, docs/timing.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from benchmark.core import confpath
from benchmark.core.config import ConfigError
from benchmark.core.confpath import PACKAGE, SearchPath
from benchmark.perf.costs import BASELINE, Costs, load
from benchmark.sweep import protocol


@dataclass(frozen=True)
class Job:
    """One cohort job of a sweep: a variant at one length, its members trained together."""

    stage: str
    cell: str
    reg: str
    seq_len: int
    members: int
    steps: int
    eval_interval: int
    regime: Optional[str] = None  # regime/<name>.yaml on the search path, where the experiment has regimes


def _train(cfg: dict[str, Any], key: str, regime: Optional[str] = None, search: SearchPath = PACKAGE) -> Any:
    """train.<key>: the regime's (composed after the experiment), else the experiment's, else conf/train's."""
    sources = []
    if regime is not None:
        path = search.require("regime", regime, "regime")
        sources.append(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    sources += [cfg, {"train": search.load("train", "default")}]
    for s in sources:
        if key in (s.get("train") or {}):
            return s["train"][key]
    raise KeyError(key)


def protocol_jobs(name: str, cfg: dict[str, Any], search: SearchPath = PACKAGE) -> list[Job]:
    """The jobs of a claims protocol (benchmark.sweep.protocol): tuning at every length (tuning seeds x rates
    x dropout p as one job), then confirmation at every length — on every confirmation seed where a claim, a
    control or (f)'s rate grid reads the point, on `exploratory_count` of them elsewhere — plus (f)'s other rates."""
    proto = protocol.load(name, search)
    assert proto is not None
    grid, n = proto.rate_grid, proto.confirmation_count
    reads = protocol.tested_points(proto)
    jobs = []
    for rg in proto.regimes:
        every, task = _train(cfg, "eval_interval", rg.name, search), protocol.regime_task(rg)
        for cell in rg.cells:
            steps = rg.steps.get(cell, _train(cfg, "steps", rg.name, search))
            for reg in rg.regs:
                drops = reg in protocol.DROPOUT_ARMS and proto.dropout_p
                tuning = len(proto.tuning_seeds) * len(proto.lr) * (len(proto.dropout_p) if drops else 1)
                for T in rg.lengths:
                    seeds = n if (task, T, cell, reg) in reads else (proto.exploratory_count or n)
                    jobs += [
                        Job("tuning", cell, reg, T, tuning, steps, every, rg.name),
                        Job("confirmation", cell, reg, T, seeds, steps, every, rg.name),
                    ]
                if grid and grid.regime == rg.name and cell in grid.cells and reg in grid.arms:
                    jobs += [Job("confirmation", cell, reg, grid.length, n, steps, every, rg.name)] * (len(grid.lr) - 1)
    return jobs


def grid_jobs(cfg: dict[str, Any], search: SearchPath = PACKAGE) -> list[Job]:
    """The jobs of a grid experiment (hydra.sweeper.params): the cohort axes' points are one job's members."""
    params = {k: str(v).split(",") for k, v in cfg["hydra"]["sweeper"]["params"].items()}
    axes = (cfg.get("cohort") or {}).get("axes", ["seed", "train.lr"])
    members = int(np.prod([len(v) for k, v in params.items() if k in axes]))
    outer = {k: v for k, v in params.items() if k not in axes}
    jobs = []
    for regime in outer.get("regime", [None]):
        steps, every = _train(cfg, "steps", regime, search), _train(cfg, "eval_interval", regime, search)
        for T in outer["task.seq_len"]:
            for cell in outer["cell"]:
                for reg in outer["reg"]:
                    jobs.append(Job("grid", cell, reg, int(T), members, int(steps), int(every), regime))
    return jobs


def job_s(costs: Costs, j: Job) -> float:
    """A job's estimated seconds: capture + steps x step_ms(T) + evaluations x eval_ms(T) + overhead(T)."""
    evals = -(-j.steps // j.eval_interval)
    b, a = costs.overhead
    return (
        costs.at(j.cell, j.reg, j.seq_len, "capture_s")
        + j.steps * costs.at(j.cell, j.reg, j.seq_len, "step_ms") / 1e3
        + evals * costs.at(j.cell, j.reg, j.seq_len, "eval_ms") / 1e3
        + a
        + b * j.seq_len
    )


def estimate(
    name: str, baseline: Path = BASELINE, search: SearchPath = PACKAGE
) -> tuple[list[tuple[Job, float]], Costs]:
    """Every job of the experiment (found on the search path) with its estimated seconds, and the costs used."""
    cfg = protocol.experiment_cfg(name, search)
    jobs = protocol_jobs(name, cfg, search) if cfg.get("protocol") is not None else grid_jobs(cfg, search)
    costs = load(int(cfg.get("hidden_size", 128)), int(_train(cfg, "batch_size", search=search)), path=baseline)
    return [(j, job_s(costs, j)) for j in jobs], costs


def summary(name: str, jobs: Sequence[tuple[Job, float]], costs: Costs) -> str:
    lines = [
        f"{name}: {len(jobs)} cohort jobs, {sum(j.members for j, _ in jobs)} runs; costs of hidden "
        f"{costs.shape[0]}, batch {costs.shape[1]} ({BASELINE.name})"
    ]
    for stage in dict.fromkeys(j.stage for j, _ in jobs):
        part = [(j, s) for j, s in jobs if j.stage == stage]
        for T in sorted({j.seq_len for j, _ in part}):
            s = sum(x for j, x in part if j.seq_len == T)
            lines.append(
                f"  {stage:<13} T={T:<5} {sum(1 for j, _ in part if j.seq_len == T):>4} jobs  {s / 60:7.1f} min"
            )
    total = sum(s for _, s in jobs)
    lines.append(f"  total on one GPU: {total / 3600:.2f} h ({total / 60:.0f} min); on N GPUs about 1/N of it")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="+", help="names under conf/experiment/ (yours: -- hydra.searchpath=[...])")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:split])
    try:
        search = confpath.from_overrides(argv[split + 1 :])
        for name in a.experiment:
            jobs, costs = estimate(name, a.baseline, search)
            print(summary(name, jobs, costs))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
