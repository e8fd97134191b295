"""The GPU wall-time estimate (benchmark/perf/estimate.py): its jobs are the sweep's, its costs the measured ones, and
the numbers the experiment files state are the ones it prints."""

from __future__ import annotations

import json
import re

import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.core import confpath
from benchmark.perf import costs, estimate, estimate_jobs
from benchmark.sweep import protocol

from helpers import PLUGIN_SEARCHPATH


def test_protocol_jobs_hold_every_run_of_the_protocol():
    """claims_cpu: tuning at every length; confirmation on its 20 seeds where a claim, a control or (f)'s rate
    grid reads the point and 6 elsewhere; (f)'s other four rates for none and bn. One job per design."""
    jobs = estimate.protocol_jobs("claims_cpu", protocol.experiment_cfg("claims_cpu"))
    runs = {s: sum(j.members for j in jobs if j.stage == s) for s in ("tuning", "confirmation")}
    # tuning: 2 seeds x 2 rates x (1 | its 1 p) x (3 cells x 2 lengths on adding + the LSTM at one length on chars)
    p = len(protocol.load("claims_cpu").dropout_p)
    assert p == 1 and runs["tuning"] == 2 * 2 * (1 + 1 + p + p) * (3 * 2 + 1)
    # confirmation: adding T=30 reads none and bn of every cell (a, b, g) -> 6 x 20, its dropout and both 6 x 6,
    # adding T=15 12 x 6, chars every arm (c, d, e) 4 x 20, (f) 2 arms x 4 rates x 20
    n = protocol.load("claims_cpu").confirmation_count
    assert n == 20 and runs["confirmation"] == 6 * n + 6 * 6 + 12 * 6 + 4 * n + 2 * 4 * n
    proto = protocol.load("claims_cpu")
    per_length = sum(len(r.cells) * len(r.regs) * len(r.lengths) for r in proto.regimes)
    assert sum(j.stage == "tuning" for j in jobs) == per_length
    assert {j.steps for j in jobs if j.seq_len == 30} == {1000}  # one budget for every cell (claim (g))


def test_grid_jobs_take_the_cohort_axes_as_members():
    jobs = estimate.grid_jobs(protocol.experiment_cfg("full"))
    assert len(jobs) == 4 * 3 * 6 * 3 and {j.members for j in jobs} == {15}
    assert {j.steps for j in jobs} == {2000} and {j.eval_interval for j in jobs} == {200}


def _doc(rows, jobs=None):
    base = dict(accel="graph", hidden=128, batch=64, capture_s=1.0, eval_ms=100.0)
    jobs = jobs or [
        dict(seq_len=100, cohort_wall_s=20.0, capture_s=1.0, steps=100, cohort_step_ms=10.0),
        dict(seq_len=1000, cohort_wall_s=110.0, capture_s=1.0, steps=100, cohort_step_ms=10.0),
    ]
    return {"rows": [{**base, **r} for r in rows], "jobs": jobs}


def test_costs_are_linear_in_t_between_and_beyond_the_measured_lengths():
    rows = [dict(cell="lstm", arm="bn", seq_len=T, step_ms=ms) for T, ms in ((100, 10.0), (300, 30.0), (1000, 50.0))]
    c = costs.Costs(_doc(rows), 128, 64)
    assert c.at("lstm", "bn", 300, "step_ms") == 30.0
    assert c.at("lstm", "bn", 200, "step_ms") == pytest.approx(20.0)
    assert c.at("lstm", "bn", 650, "step_ms") == pytest.approx(40.0)
    assert c.at("lstm", "bn", 64, "step_ms") == pytest.approx(6.4)  # along the first segment
    b, a = c.overhead  # 18 s at T=100, 108 s at T=1000
    assert (a, b) == (pytest.approx(8.0), pytest.approx(0.1))
    job = estimate.Job("grid", "lstm", "bn", 300, 15, steps=1000, eval_interval=200)
    assert estimate.job_s(c, job) == pytest.approx(1.0 + 1000 * 0.030 + 5 * 0.1 + 8.0 + 0.1 * 300)


def test_an_unmeasured_variant_is_an_error_naming_it():
    c = costs.Costs(_doc([dict(cell="lstm", arm="bn", seq_len=100, step_ms=1.0)]), 128, 64)
    with pytest.raises(Exception, match="gru-none"):
        c.at("gru", "none", 100, "step_ms")


@pytest.mark.parametrize("name", ["claims_gpu", "full"])
def test_the_experiment_file_states_the_estimate_it_prints(name):
    text = confpath.PACKAGE.require("experiment", name, "EXPERIMENT").read_text()
    h, m = map(int, re.search(r"Estimated wall time on one H100, with cohorts: (\d+) h (\d+) min", text).groups())
    jobs, _ = estimate.estimate(name)
    assert sum(s for _, s in jobs) / 60 == pytest.approx(60 * h + m, abs=1.0)


def test_the_gpu_default_fits_two_hours_and_covers_the_grid():
    """claims_gpu: T up to 1000, every cell x none/bn/dropout/both, >= 10 seeds, <= 2 h on one GPU by the estimate."""
    jobs, _ = estimate.estimate("claims_gpu")
    assert max(j.seq_len for j, _ in jobs) == 1000
    assert {(j.cell, j.reg) for j, _ in jobs} == {
        (c, r) for c in ("rnn", "lstm", "gru") for r in protocol.DROPOUT_ARMS + ("none", "bn")
    }
    assert min(j.members for j, _ in jobs if j.stage == "confirmation") >= 10
    assert sum(s for _, s in jobs) <= 2 * 3600


def test_the_baseline_holds_every_variant_the_gpu_experiments_need():
    doc = json.loads(costs.BASELINE.read_text())
    graph = {(r["cell"], r["arm"]) for r in doc["rows"] if r["accel"] == "graph" and "eval_ms" in r}
    assert graph >= {(c, r) for c in ("rnn", "lstm", "gru") for r in ("none", "bn", "dropout", "both")}


def test_a_users_experiment_is_priced_from_its_own_folder():
    """my_claims and its regime live only in the user's folder (tests/plugin_example/conf): read as its runs read
    them, and the whole-job overrides carry the search path."""
    search = confpath.from_overrides([PLUGIN_SEARCHPATH])
    jobs = estimate.protocol_jobs("my_claims", protocol.experiment_cfg("my_claims", search), search)
    assert {(j.stage, j.reg, j.members, j.steps, j.eval_interval, j.regime) for j in jobs} == {
        (stage, reg, n, 6, 3, "my_sign")
        for stage, n in (("tuning", 1), ("confirmation", 2))
        for reg in ("none", "noise")
    }
    over = estimate_jobs.overrides("my_claims", jobs[1], None, search)
    assert over[:2] == [PLUGIN_SEARCHPATH, "+experiment=my_claims"] and over[2] == "regime=my_sign"
