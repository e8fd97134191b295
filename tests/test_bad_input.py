"""Bad input: a one-paragraph error naming key, value and what is allowed; non-zero exit; results untouched.

The config errors are checked in-process (compose, then `benchmark.job.prepare.prepare`, the path the CLI
takes before it writes anything); a few cases go through the real CLI, whose exit code and stderr
are the point there.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

import benchmark as bm  # noqa: F401

from helpers import error_text, python_m


def tree_digest(root: Path) -> dict[str, str]:
    """Every result file under root and its content hash: 'untouched' means equal before and after.

    Hydra's own bookkeeping (`<sweep>/hydra/`, written before any of our code runs) is not a result.
    """
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "hydra" not in p.relative_to(root).parts
    }


@pytest.fixture()
def results(results_dir: Path) -> Path:
    """A results folder that already holds one finished run of a sweep."""
    run = results_dir / "mysweep" / "runs" / "0123456789ab"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "history.csv").write_text("step,train_loss\n1,0.5\n")
    (run / "metrics.json").write_text(json.dumps({"complete": True, "status": "ok", "run_id": "0123456789ab"}))
    return results_dir


# (overrides, words the message must contain: the key, the value, the allowed values)
RUN_CASES = {
    "unknown cell": (["cell=lstmm"], ["cell", "lstmm", "gru", "lstm", "rnn"]),
    "unknown reg": (["reg=nada"], ["reg", "nada", "none", "bn", "dropout", "both"]),
    "unknown bn placement": (
        ["reg=bn", "reg.bn.placement=sideways"],
        ["reg.bn.placement", "sideways", "recurrent", "input", "output"],
    ),
    "unknown dropout placement": (
        ["reg=dropout", "reg.dropout.placement=zoneout"],
        ["reg.dropout.placement", "zoneout", "output", "variational", "recurrent"],
    ),
    "unknown task": (["task=nope"], ["task", "nope", "adding", "copy", "digits"]),
    "unknown launcher": (
        ["--multirun", "hydra/launcher=foo", "seed=0,1"],
        ["hydra/launcher", "foo", "joblib", "slurm_cpu"],
    ),
    "seq_len zero": (["task.seq_len=0"], ["task.seq_len", "0", ">="]),
    "seq_len negative": (["task=digits", "task.seq_len=-5"], ["task.seq_len", "-5", ">="]),
    "dropout p one": (["reg=dropout", "reg.dropout.p=1.0"], ["reg.dropout.p", "1.0", "[0, 1)"]),
    "dropout p negative": (["reg=dropout", "reg.dropout.p=-0.1"], ["reg.dropout.p", "-0.1", "[0, 1)"]),
    "bn with batch size 1": (["reg=bn", "train.batch_size=1"], ["train.batch_size", "1", ">= 2"]),
    "hidden_size zero": (["hidden_size=0"], ["hidden_size", "0", "> 0"]),
    "native with recurrent bn": (
        ["reg=bn", "impl=native"],
        ["impl", "native", "custom or auto", "reg.bn.placement=recurrent"],
    ),
    "native with variational dropout": (
        ["reg=dropout", "reg.dropout.placement=variational", "impl=native"],
        ["impl", "native", "reg.dropout.placement=variational"],
    ),
    "unknown impl": (["impl=fused"], ["impl", "fused", "native", "custom", "auto"]),
    "unknown scheduler": (["train.scheduler=linear"], ["train.scheduler", "linear", "cosine", "step", "decay"]),
    "decay factor above one": (
        ["train.scheduler=decay", "train.lr_decay=2"],
        ["train.lr_decay", "2", "(0, 1]", "train.scheduler=decay"],
    ),
    "decay period zero": (["train.scheduler=decay", "train.lr_decay_every=0"], ["train.lr_decay_every", "0", ">= 1"]),
    "unknown init scheme": (["init.scheme=orthogonal"], ["init.scheme", "orthogonal", "torch", "uniform"]),
    "uniform init of width zero": (["init.scheme=uniform", "init.scale=0"], ["init.scale", "0", "> 0"]),
    "per-step bn statistics shorter than the task": (
        ["reg=bn", "task=copy", "task.seq_len=50", "reg.bn.max_stats_steps=60"],
        ["reg.bn.max_stats_steps", "60", "task.total_len = 70"],
    ),
    "unknown bn population": (
        ["reg=bn", "reg.bn.population=running"],
        ["reg.bn.population", "running", "precise", "moving"],
    ),
    "precise bn with no batches": (["reg=bn", "reg.bn.precise_batches=0"], ["reg.bn.precise_batches", "0", ">= 1"]),
    "input dropout one": (["reg=dropout", "reg.dropout.input_p=1.0"], ["reg.dropout.input_p", "1.0", "[0, 1)"]),
    "digits shorter than its 64 pixels": (["task=digits", "task.seq_len=32"], ["task.seq_len", "32", ">= 64"]),
    "zoneout p_c one": (["reg=zoneout", "reg.zoneout.p_c=1.0"], ["reg.zoneout.p_c", "1.0", "[0, 1)"]),
    "ln eps zero": (["reg=ln", "reg.ln.eps=0"], ["reg.ln.eps", "0", "> 0"]),
    "native with ln": (["reg=ln", "impl=native"], ["impl", "native", "custom or auto", "reg=ln"]),
    "unknown ucr dataset": (["task=ucr", "task.dataset=Gunpoint"], ["task.dataset", "Gunpoint", "GunPoint", "PigCVP"]),
    "smnist length not dividing 784": (["task=smnist", "task.seq_len=100"], ["task.seq_len", "100", "divisor of 784"]),
    # Hydra refuses `reg.dropout.p=0.3` on reg=none and suggests `+`: the arm refuses that too (a mislabelled point)
    "another arm's block with +": (
        ["reg=none", "+reg.dropout.p=0.3"],
        ["reg.dropout.p", "0.3", "reg=none's blocks: none", "reg=both, reg=dropout"],
    ),
    "a bn setting on a dropout arm": (
        ["reg=dropout", "+reg.bn.placement=input"],
        ["reg.bn.placement", "input", "reg=dropout's blocks: reg.dropout.*", "reg=bn, reg=both"],
    ),
}


# Cases a config check catches (a ConfigError from validate/prepare) are checked for their key too;
# the others are Hydra's own (an unknown group option, a value outside an enum of the schema).
CLI_CASES = ["unknown launcher", "seq_len zero", "unknown impl"]  # through the real CLI as well


@pytest.mark.parametrize("case", sorted(set(RUN_CASES) - {"unknown launcher"}))
def test_bad_run_config_is_a_clear_error_before_anything_is_written(case, results, compose):
    from benchmark.core.config import ConfigError
    from benchmark.job.prepare import prepare

    overrides, words = RUN_CASES[case]
    before = tree_digest(results)
    with pytest.raises(Exception) as info:
        prepare(compose(*overrides, "sweep=mysweep", "train.steps=2"), point=overrides)
    message = error_text(info.value)
    for w in words:
        assert w in message, f"{case}: {w!r} missing from:\n{message}"
    if isinstance(info.value, ConfigError):  # the structured error: key and value as the user typed them
        key, value = words[:2]
        assert info.value.key == key and value in str(info.value.value), (case, info.value.key, info.value.value)
    else:
        assert type(info.value).__module__.startswith(("hydra", "omegaconf")), (case, repr(info.value))
    assert tree_digest(results) == before


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_run_config_on_the_command_line_exits_2_with_one_message(case, results):
    overrides, words = RUN_CASES[case]
    before = tree_digest(results)
    p = python_m("benchmark.run", *overrides, f"results_dir={results}", "sweep=mysweep", "train.steps=2")
    message = p.stderr + p.stdout
    assert p.returncode != 0, message
    if case == "seq_len zero":  # our ConfigError: exit status 2, the one-line message on stderr
        assert p.returncode == 2 and p.stderr.startswith("error: invalid config: task.seq_len=0;"), message
    for w in words:
        assert w in message, f"{case}: {w!r} missing from:\n{message}"
    assert "Traceback" not in message  # a message, not a stack trace
    assert tree_digest(results) == before


def test_results_path_that_is_a_file(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    p = python_m("benchmark.run", f"results_dir={f}", "train.steps=2")
    assert p.returncode != 0
    assert "results_dir" in p.stderr and str(f) in p.stderr and "directory" in p.stderr
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("which", ["missing", "empty"])
@pytest.mark.parametrize("tool", ["benchmark.analysis.report", "benchmark.analysis.aggregate"])
def test_report_or_aggregate_of_no_results(tmp_path, which, tool, capsys):
    folder = tmp_path / "results" / "nosuchsweep"
    if which == "empty":
        folder.mkdir(parents=True)
    out = tmp_path / "reports" / "nosuchsweep"
    main = importlib.import_module(tool).main
    code = main([str(folder), *(["--out", str(out)] if tool == "benchmark.analysis.report" else [])])
    assert code != 0
    captured = capsys.readouterr()
    msg = captured.err + captured.out
    assert str(folder) in msg and "Traceback" not in msg
    assert not out.exists()
    assert sorted(tmp_path.rglob("*")) == ([folder.parent, folder] if which == "empty" else [])


def test_corrupt_metrics_json_is_named_and_nothing_is_lost(results):
    bad = results / "mysweep" / "runs" / "badbadbadbad"
    bad.mkdir()
    (bad / "config.yaml").write_text("seed: 1\n")
    (bad / "metrics.json").write_text('{"complete": true, "status": "o')  # truncated by hand
    before = tree_digest(results)
    p = python_m("benchmark.analysis.aggregate", str(results / "mysweep"))  # the real CLI: exit code, no traceback
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
