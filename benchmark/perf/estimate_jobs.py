"""Whole cohort jobs measured on a GPU, and an experiment's wall-time estimate rebuilt from them.

`benchmark.perf.estimate` prices every job of an experiment from cohort-step costs and a per-job overhead fitted to
two jobs of another experiment. Here, one whole job per regime x length of the experiment itself is run (the
cheapest confirmation job there: its cell and arm at the full step budget, every confirmation seed as one
cohort) and each measured job's wall time over its estimate is the factor that rebuilds the estimate of every
job of that regime at that length (at the nearest measured length where a length was not measured):

    python -m benchmark.perf.estimate_jobs plan claims_gpu                 # "<seconds> <overrides>" per whole job
    python -m benchmark.run --multirun <overrides> results_dir=R sweep=claims_jobs    # each, timed (gpu_check.sh)
    python -m benchmark.perf.estimate_jobs rebuild claims_gpu R/claims_jobs --json rebuilt.json

An experiment of the user's own folder: add `-- hydra.searchpath=[file://$PWD/conf]` (the plan's overrides then
carry it).

A job's measured seconds are its cohort's wall time (`env.cohort_wall_s`; the members' `wall_s` summed where
they trained one after another).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

from benchmark.core import confpath
from benchmark.core.confpath import PACKAGE, SearchPath
from benchmark.perf.estimate import BASELINE, Job, estimate
from benchmark.sweep import protocol

NO_P = ("none", "bn")  # arms without a dropout p: a whole job's settings need no tuning to be meaningful


def regime_task(regime: str, search: SearchPath = PACKAGE) -> str:
    """The task a regime trains (its `override /task:` default), as run records name it."""
    file = search.require("regime", regime, "regime")
    return protocol.regime_task(protocol.Regime(regime, (), file=file))


def whole_jobs(jobs: Sequence[tuple[Job, float]]) -> list[tuple[Job, float]]:
    """The cheapest confirmation job of each regime x length (arms without dropout p), cheapest first."""
    best: dict[tuple[Optional[str], int], tuple[Job, float]] = {}
    for j, s in jobs:
        key = (j.regime, j.seq_len)
        if j.stage == "confirmation" and j.reg in NO_P and (key not in best or s < best[key][1]):
            best[key] = (j, s)
    return sorted(best.values(), key=lambda js: js[1])


def overrides(name: str, j: Job, members: Optional[int] = None, search: SearchPath = PACKAGE) -> list[str]:
    """The `benchmark.run --multirun` overrides of one whole job: the search path, the experiment, the job's variant,
    length and budget, its confirmation seeds (the first `members` of them) at the protocol's first rate."""
    proto = protocol.load(name, search)
    seeds = list(protocol.freeze(name, search).confirmation_seeds if proto else [0])[: members or None]
    lr = proto.lr[0] if proto else None
    return [
        *search.overrides(),
        f"+experiment={name}",
        *([f"regime={j.regime}"] if j.regime else []),
        f"cell={j.cell}",
        f"reg={j.reg}",
        f"task.seq_len={j.seq_len}",
        f"train.steps={j.steps}",
        *([f"train.lr={lr}"] if lr is not None else []),
        "seed=" + ",".join(str(s) for s in seeds),
    ]


def measured(folder: Path) -> list[dict[str, Any]]:
    """Each cohort job under `folder` (runs/*/metrics.json): task, cell, reg, seq_len, members, seconds."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in sorted(Path(folder).glob("runs/*/metrics.json")):
        r = json.loads(f.read_text())
        groups[r.get("cohort_id") or r["run_id"]].append(r)
    out = []
    for rs in groups.values():
        wall = (rs[0].get("env") or {}).get("cohort_wall_s") or sum(r.get("wall_s") or 0.0 for r in rs)
        r = rs[0]
        out.append(
            {
                "task": r["task"],
                "cell": r["cell"],
                "reg": r["reg"],
                "seq_len": r["seq_len"],
                "members": len(rs),
                "steps": r.get("steps_done"),
                "statuses": sorted({x["status"] for x in rs}),
                "measured_s": wall,
            }
        )
    return out


def rebuild(name: str, folder: Path, baseline: Path = BASELINE, search: SearchPath = PACKAGE) -> dict[str, Any]:
    """The experiment's estimate, and the same rebuilt with each measured whole job's factor (measured / estimated)
    applied to every job of its regime at its length (the nearest measured length of the regime otherwise; the
    mean factor for a regime with none measured). Jobs with a failed member are left out."""
    jobs, _ = estimate(name, baseline, search)
    tasks = {rg: regime_task(rg, search) for rg in {j.regime for j, _ in jobs if j.regime}}
    rows = []
    for m in measured(folder):
        if not set(m["statuses"]) <= {"ok", "diverged"}:  # a failed job's wall time prices nothing
            continue
        match = [
            (j, s)
            for j, s in jobs
            if j.stage == "confirmation"
            and (j.cell, j.reg, j.seq_len) == (m["cell"], m["reg"], m["seq_len"])
            and tasks.get(j.regime or "", m["task"]) == m["task"]
        ]
        if match:
            j, s = match[0]
            rows.append({**m, "regime": j.regime, "estimated_s": s, "factor": m["measured_s"] / s})
    if not rows:
        raise ValueError(f"{folder}: no measured job matches a confirmation job of {name}")
    mean = sum(r["factor"] for r in rows) / len(rows)

    def factor(j: Job) -> float:
        own = [r for r in rows if r["regime"] == j.regime]
        if not own:
            return mean
        return min(own, key=lambda r: abs(math.log(r["seq_len"] / j.seq_len)))["factor"]

    total = sum(s for _, s in jobs)
    rebuilt = sum(s * factor(j) for j, s in jobs)
    return {"experiment": name, "jobs": len(jobs), "estimated_s": total, "rebuilt_s": rebuilt, "measured": rows}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    plan = sub.add_parser("plan", help="the whole jobs to measure: '<estimated seconds> <overrides>' per line")
    plan.add_argument("experiment")
    plan.add_argument("--members", type=int, default=None, help="the first N confirmation seeds (a dry run)")
    again = sub.add_parser("rebuild", help="the estimate rebuilt from the measured jobs under FOLDER")
    again.add_argument("experiment")
    again.add_argument("folder", type=Path)
    again.add_argument("--json", type=Path, default=None)
    for p in (plan, again):
        p.add_argument("--baseline", type=Path, default=BASELINE)
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)  # after it: the user's hydra.searchpath override
    a, search = ap.parse_args(argv[:split]), confpath.from_overrides(argv[split + 1 :])
    if a.cmd == "plan":
        for j, s in whole_jobs(estimate(a.experiment, a.baseline, search)[0]):
            print(f"{s:.0f}", " ".join(overrides(a.experiment, j, a.members, search)))
        return 0
    out = rebuild(a.experiment, a.folder, a.baseline, search)
    for r in out["measured"]:
        print(
            f"  {r['regime']} T={r['seq_len']} {r['cell']}-{r['reg']} x{r['members']}: "
            f"measured {r['measured_s']:.1f} s, estimated {r['estimated_s']:.1f} s (x{r['factor']:.2f})"
        )
    print(
        f"{a.experiment}: {out['jobs']} jobs; estimated {out['estimated_s'] / 60:.0f} min, "
        f"rebuilt from {len(out['measured'])} measured jobs {out['rebuilt_s'] / 60:.0f} min on one GPU"
    )
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
