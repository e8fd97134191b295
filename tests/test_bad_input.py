"""Bad input: a one-paragraph error naming key, value and what is allowed; non-zero exit; results untouched."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark as bm  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> dict[str, str]:
    """Every result file under root and its content hash: 'untouched' means equal before and after.

    Hydra's own bookkeeping (`<sweep>/hydra/`, written before any of our code runs) is not a result.
    """
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "hydra" not in p.relative_to(root).parts}


def python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """A results folder that already holds one finished run of a sweep."""
    run = tmp_path / "results" / "mysweep" / "runs" / "0123456789ab"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "history.csv").write_text("step,train_loss\n1,0.5\n")
    (run / "metrics.json").write_text(json.dumps({"complete": True, "status": "ok", "run_id": "0123456789ab"}))
    return tmp_path / "results"


# (overrides, words the message must contain: the key, the value, the allowed values)
RUN_CASES = {
    "unknown cell": (["cell=lstmm"], ["cell", "lstmm", "gru", "lstm", "rnn"]),
    "unknown reg": (["reg=nada"], ["reg", "nada", "none", "bn", "dropout", "both"]),
    "unknown bn placement": (["reg=bn", "reg.bn.placement=sideways"],
                             ["reg.bn.placement", "sideways", "recurrent", "input", "output"]),
    "unknown dropout placement": (["reg=dropout", "reg.dropout.placement=zoneout"],
                                  ["reg.dropout.placement", "zoneout", "output", "variational", "recurrent"]),
    "unknown task": (["task=nope"], ["task", "nope", "adding", "copy", "digits"]),
    "unknown launcher": (["--multirun", "hydra/launcher=foo", "seed=0,1"], ["hydra/launcher", "foo", "joblib",
                                                                           "submitit_slurm"]),
    "seq_len zero": (["task.seq_len=0"], ["task.seq_len", "0", ">="]),
    "seq_len negative": (["task=digits", "task.seq_len=-5"], ["task.seq_len", "-5", ">="]),
    "dropout p one": (["reg=dropout", "reg.dropout.p=1.0"], ["reg.dropout.p", "1.0", "[0, 1)"]),
    "dropout p negative": (["reg=dropout", "reg.dropout.p=-0.1"], ["reg.dropout.p", "-0.1", "[0, 1)"]),
    "bn with batch size 1": (["reg=bn", "train.batch_size=1"], ["train.batch_size", "1", ">= 2"]),
    "hidden_size zero": (["hidden_size=0"], ["hidden_size", "0", "> 0"]),
    "native with recurrent bn": (["reg=bn", "impl=native"], ["impl", "native", "custom or auto",
                                                             "reg.bn.placement=recurrent"]),
    "native with variational dropout": (["reg=dropout", "reg.dropout.placement=variational", "impl=native"],
                                        ["impl", "native", "reg.dropout.placement=variational"]),
    "unknown impl": (["impl=fused"], ["impl", "fused", "native", "custom", "auto"]),
    "per-step bn statistics shorter than the task": (
        ["reg=bn", "task=copy", "task.seq_len=50", "reg.bn.max_stats_steps=60"],
        ["reg.bn.max_stats_steps", "60", "task.total_len = 70"]),
    "unknown bn population": (["reg=bn", "reg.bn.population=running"],
                              ["reg.bn.population", "running", "precise", "moving"]),
    "precise bn with no batches": (["reg=bn", "reg.bn.precise_batches=0"], ["reg.bn.precise_batches", "0", ">= 1"]),
    "input dropout one": (["reg=dropout", "reg.dropout.input_p=1.0"], ["reg.dropout.input_p", "1.0", "[0, 1)"]),
    "digits shorter than its 64 pixels": (["task=digits", "task.seq_len=32"], ["task.seq_len", "32", ">= 64"]),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_bad_run_config_fails_loud_and_touches_nothing(case, results):
    overrides, words = RUN_CASES[case]
    before = tree_digest(results)
    p = python("-m", "benchmark.run", *overrides, f"results_dir={results}", "sweep=mysweep", "train.steps=2")
    message = p.stderr + p.stdout
    assert p.returncode != 0, message
    for w in words:
        assert w in message, f"{case}: {w!r} missing from:\n{message}"
    assert "Traceback" not in message  # a message, not a stack trace
    assert tree_digest(results) == before


def test_results_path_that_is_a_file(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    p = python("-m", "benchmark.run", f"results_dir={f}", "train.steps=2")
    assert p.returncode != 0
    assert "results_dir" in p.stderr and str(f) in p.stderr and "directory" in p.stderr
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("which", ["missing", "empty"])
@pytest.mark.parametrize("tool", ["benchmark.analysis.report", "benchmark.analysis.aggregate"])
def test_report_or_aggregate_of_no_results(tmp_path, which, tool):
    folder = tmp_path / "results" / "nosuchsweep"
    if which == "empty":
        folder.mkdir(parents=True)
    out = tmp_path / "reports" / "nosuchsweep"
    p = python("-m", tool, str(folder), *(["--out", str(out)] if tool == "benchmark.analysis.report" else []))
    assert p.returncode != 0
    msg = p.stderr + p.stdout
    assert str(folder) in msg and "Traceback" not in msg
    assert not out.exists()
    assert sorted(tmp_path.rglob("*")) == ([folder.parent, folder] if which == "empty" else [])


def test_corrupt_metrics_json_is_named_and_nothing_is_lost(results):
    bad = results / "mysweep" / "runs" / "badbadbadbad"
    bad.mkdir()
    (bad / "config.yaml").write_text("seed: 1\n")
    (bad / "metrics.json").write_text('{"complete": true, "status": "o')  # truncated by hand
    before = tree_digest(results)
    p = python("-m", "benchmark.analysis.aggregate", str(results / "mysweep"))
    msg = p.stderr + p.stdout
    assert p.returncode != 0
    assert str(bad / "metrics.json") in msg and "Traceback" not in msg
    after = tree_digest(results)
    assert {k: v for k, v in after.items() if k in before} == before  # existing files untouched
    # The good run is not held back: both folders are rows of the summary, the bad one as corrupt.
    import pandas as pd
    summary = pd.read_csv(results / "mysweep" / "summary.csv").set_index("run_id")
    assert summary.loc["0123456789ab", "status"] == "ok"
    assert summary.loc["badbadbadbad", "status"] == "corrupt"
