"""Aggregate + report of synthetic sweeps shaped like `full` (3 tasks x 5 lengths up to 1000 x 3
cells x 4 regs, 1000 history rows per run): 360, 900 and 1800 run folders, to show the analysis
time grows linearly with the runs (`make bench-analysis`; docs/analysis-performance.md).

Run folders are written once per session (untimed); each round times
`python -m benchmark.analysis.aggregate` + `python -m benchmark.analysis.report` in process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import aggregate, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic_runs import make_sweep  # noqa: E402

SHAPES = {  # runs: (impls, seeds)
    360: (("auto",), range(2)),
    900: (("auto",), range(5)),
    1800: (("auto", "custom"), range(5)),
}


@pytest.fixture(scope="session")
def sweeps(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("analysis-bench")
    out = {}
    for n, (impls, seeds) in SHAPES.items():
        out[n] = make_sweep(
            root,
            f"full{n}",
            tasks=("adding", "copy", "digits"),
            lens=(50, 100, 200, 500, 1000),
            impls=impls,
            seeds=seeds,
            steps=2000,
            log_every=2,
        )
        assert len(list((out[n] / "runs").iterdir())) == n
    return out


@pytest.mark.parametrize("runs", sorted(SHAPES))
def test_aggregate_and_report(benchmark, sweeps, runs, tmp_path):
    sweep = sweeps[runs]

    cpu: list[float] = []

    def analyse() -> None:
        c0 = time.process_time()
        assert aggregate.main([str(sweep)]) == 0
        assert report.main([str(sweep), "--out", str(tmp_path / "report")]) == 0
        cpu.append(time.process_time() - c0)

    load = os.getloadavg()[0]
    benchmark.pedantic(analyse, rounds=2, iterations=1, warmup_rounds=0)
    # CPU seconds (all threads) next to the wall times: on a shared machine the wall time follows the
    # neighbours' load, the CPU time much less.
    benchmark.extra_info.update(
        runs=runs,
        history_rows_per_run=1000,
        cpu_s=cpu,
        load_1min_before=load,
        load_1min_after=os.getloadavg()[0],
        cpus=os.cpu_count(),
    )
