"""`make compare A=... B=...` (benchmark/analysis/compare.py) on real smoke sweeps.

Two sweeps that differ by one deliberate change (the learning rate) must show it, as the
verdicts' statistics see it; two identical sweeps must show nothing; `--fail-on worse` is
the gate CI uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.analysis import compare

from helpers import ENV, ROOT

SLICE = ["cell=lstm", "reg=none,bn", "task.seq_len=6", "seed=0,1,2,3,4"]  # 2 points x 5 seeds
MOVED = {compare.BETTER, compare.WORSE, compare.HIGHER, compare.LOWER}


def sweep(results: Path, name: str, lr: float) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "benchmark.run",
        "--multirun",
        "+experiment=smoke",
        f"sweep={name}",
        f"results_dir={results}",
        f"train.lr={lr}",
        *SLICE,
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return results / name


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Sweep `a` (lr 0.05), `same` (a again, from scratch) and `slow` (lr 1e-6: the model barely moves)."""
    r = tmp_path_factory.mktemp("compare") / "results"
    sweep(r, "a", 0.05)
    sweep(r, "same", 0.05)
    sweep(r, "slow", 1e-6)
    return r


def run(results: Path, *args: str) -> tuple[int, str, pd.DataFrame]:
    out = results.parent / "reports" / "-".join(args[:2])
    p = subprocess.run(
        [sys.executable, "-m", "benchmark.analysis.compare", *args, "--results-dir", str(results), "--out", str(out)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    table = pd.read_csv(out / "compare.csv") if (out / "compare.csv").exists() else pd.DataFrame()
    return p.returncode, p.stdout + p.stderr, table


@pytest.mark.sweep  # three real multiruns (the module's `results`)
def test_a_learning_rate_change_is_found_and_fails_the_gate(results):
    code, out, table = run(results, "a", "slow", "--fail-on", "worse")
    assert code == 1, out
    assert "A -> B changed: lr 0.05 -> 1e-06" in out
    assert "FAIL:" in out and "significantly worse in B" in out
    score = table[table["measure"] == "test_score"]
    assert len(score) == 2 and set(score["variant"]) == {"none", "bn.recurrent"}
    assert (score["paired"]).all() and (score["n"] == 5).all()
    assert (score["change"] == compare.WORSE).all(), score
    assert (score["diff"] < 0).all() and (score["diff_high"] < 0).all()  # the interval excludes no change
    html = (results.parent / "reports" / "a-slow" / "index.html").read_text()
    assert "What changed from A to B" in html and "lr" in html and "worse" in html


@pytest.mark.sweep  # three real multiruns (the module's `results`)
def test_two_identical_sweeps_show_nothing(results):
    code, out, table = run(results, "a", "same", "--fail-on", "worse")
    assert code == 0, out
    assert "2 shared grid points (0 only in A, 0 only in B)" in out
    science = table[table["measure"] != "fwd_bwd_ms"]  # deterministic on CPU: identical values
    assert len(science) and not science["change"].isin(MOVED).any(), science
    assert (science["diff"] == 0).all()


@pytest.mark.sweep  # three real multiruns (the module's `results`)
def test_points_in_one_sweep_only_are_listed(results, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(results / "a", part)
    for d in (part / "runs").iterdir():  # drop every bn run from the copy
        if "name: bn" in (d / "config.yaml").read_text():
            shutil.rmtree(d)
    code, out, table = run(results, "a", str(part))
    assert code == 0, out
    assert "1 shared grid points (1 only in A, 0 only in B)" in out
    assert set(table["variant"]) == {"none"}


@pytest.mark.sweep  # three real multiruns (the module's `results`)
def test_a_missing_sweep_is_a_clear_error(results):
    code, out, _ = run(results, "a", "nope")
    assert code == 2 and "'nope': neither" in out


@pytest.mark.sweep  # three real multiruns (the module's `results`)
def test_make_compare(results, tmp_path):
    p = subprocess.run(
        ["make", "compare", "A=a", "B=slow", f"RESULTS_DIR={results}", f"REPORTS_DIR={tmp_path}"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "compare-a-vs-slow" / "compare.csv").exists()
    assert p.stdout.rstrip().splitlines()[-1] == f"report: {(tmp_path / 'compare-a-vs-slow' / 'index.html').resolve()}"


def frame(lr: float, shift: float, lrs_swept: tuple[float, ...] = ()) -> pd.DataFrame:
    """A summary of finished runs: 2 variants x 6 seeds (x swept lrs), test_metric = 1 + shift + noise (6: a
    constant difference over n seeds has the exact p 2^(1-n), below 0.05 from 6 seeds)."""
    rows = []
    for variant in ("none", "bn.recurrent"):
        for lr_ in lrs_swept or (lr,):
            for seed in range(6):
                rows.append(
                    dict(
                        task="adding",
                        seq_len=6,
                        cell="lstm",
                        variant=variant,
                        impl="auto",
                        lr=lr_,
                        seed=seed,
                        device="cpu",
                        test_metric=1 + shift + 0.01 * ((seed * 7) % 5),
                        metric_higher_is_better=False,
                        grad_norm_mean=2.0 + 0.01 * seed,
                    )
                )
    return pd.DataFrame(rows)


def test_constant_differences_are_the_change_and_swept_keys_are_the_point():
    key, changed = compare.split_keys(frame(0.01, 0), frame(0.003, 0))
    assert key == compare.BASE_KEY and changed == {"lr": (0.01, 0.003)}
    key, changed = compare.split_keys(frame(0, 0, (0.01, 0.003)), frame(0, 0, (0.01, 0.03)))
    assert key == compare.BASE_KEY + ["lr"] and changed == {}  # lr swept in both: part of the point


def test_direction_comes_from_the_records_and_gradients_get_no_judgement():
    measures = [m for m in compare.MEASURES if m.column in ("test_metric", "grad_norm_mean")]
    table, key, info = compare.compare_sweeps(frame(0.01, 0), frame(0.01, 0.5), measures=measures)
    metric = table[table["measure"] == "test_metric"]
    assert (metric["direction"] == -1).all() and (metric["change"] == compare.WORSE).all()  # lower is better
    assert (metric["diff"] > 0.49).all() and (metric["diff_low"] > 0).all()
    grads = table[table["measure"] == "grad_norm_mean"]
    assert (grads["change"] == compare.UNCLEAR).all() and (grads["diff"] == 0).all()
    assert len(compare.worse(table)) == 2 and len(compare.worse(table, ["test_score"])) == 0
    table, _, _ = compare.compare_sweeps(frame(0.01, 0.5), frame(0.01, 0), measures=measures)
    assert (table[table["measure"] == "test_metric"]["change"] == compare.BETTER).all()
