"""`python -m benchmark.aggregate`: one tidy row per run folder, profiles and curves as long tables,
problem folders reported by path (never silently skipped), a missing results folder fails loud."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import aggregate

from synthetic_runs import make_run, make_sweep


def test_one_row_per_run_with_env_flattened_and_long_tables(tmp_path):
    sweep = make_sweep(tmp_path, cells=("lstm", "gru"), tasks=("adding",), lens=(5, 10), seeds=(0, 1))
    assert aggregate.main([str(sweep)]) == 0
    s = pd.read_parquet(sweep / "summary.parquet")
    assert len(s) == 2 * 4 * 2 * 2 and s["run_id"].is_unique
    assert set(s["status"]) == {"ok"}
    assert {"env_torch", "env_hostname", "env_threads", "test_accuracy", "fwd_bwd_ms", "metric_name"} <= set(s.columns)
    assert "env" not in s.columns and "hidden_grad_profile_start" not in s.columns  # lists go to profiles
    csv = pd.read_csv(sweep / "summary.csv")
    assert sorted(csv["run_id"]) == sorted(s["run_id"])
    prof = pd.read_parquet(sweep / "profiles.parquet")
    assert list(prof.columns) == ["run_id", "which", "t", "grad_norm"]
    gains = (s["seed"] == 0) & s["reg"].isin(["bn", "both"])  # BN runs probe the gain inits once per job
    expected = sum(2 * T for T in s["seq_len"]) + 3 * int(s.loc[gains, "seq_len"].sum())  # t = 1..T each
    assert len(prof) == expected and set(prof["which"]) == {"start", "end", "init γ=0.1", "init γ=0.5", "init γ=1"}
    assert set(prof.loc[prof["which"].str.startswith("init"), "run_id"]) == set(s.loc[gains, "run_id"])
    one = prof[(prof["run_id"] == s["run_id"].iloc[0]) & (prof["which"] == "start")]
    assert list(one["t"]) == list(range(1, int(s["seq_len"].iloc[0]) + 1))
    curves = pd.read_parquet(sweep / "curves.parquet")
    assert {"run_id", "cell", "reg", "seed", "step", "grad_norm", "val_accuracy"} <= set(curves.columns)
    assert set(curves["run_id"]) == set(s["run_id"])


def test_failed_diverged_and_broken_folders_are_rows_and_reported_by_path(tmp_path, capsys):
    sweep = tmp_path / "mixed"
    make_run(sweep, seed=0)
    make_run(sweep, seed=1, status="diverged", diverged_at_step=7)
    make_run(sweep, seed=2, status="failed", error="RuntimeError: out of memory")
    bad_json = make_run(sweep, seed=3)
    (bad_json / "metrics.json").write_text('{"complete": true, "status": "o')  # torn file
    not_complete = make_run(sweep, seed=4, complete=False)
    killed = make_run(sweep, seed=5, cell="gru", reg="bn", seq_len=7)
    (killed / "metrics.json").unlink()  # config.yaml (and history) written, killed before metrics.json
    no_history = make_run(sweep, seed=6)
    (no_history / "history.csv").unlink()

    assert aggregate.main([str(sweep)]) == 1  # corrupt folders are an error, raised after the tables are written
    err = capsys.readouterr().err
    assert "error: 2 run folder(s)" in err and "status=corrupt" in err
    s = pd.read_parquet(sweep / "summary.parquet").set_index("run_id")
    assert len(s) == 7
    status = s["status"].to_dict()
    assert status[bad_json.name] == "corrupt" and str(bad_json) in err
    assert status[not_complete.name] == "incomplete" and str(not_complete) in err
    assert status[killed.name] == "incomplete" and str(killed) in err
    assert status[no_history.name] == "corrupt" and str(no_history) in err
    assert sorted(status.values()).count("ok") == 1
    # identity of the killed run comes from its config.yaml, so the report can say which point is missing
    assert (s.loc[killed.name, "cell"], s.loc[killed.name, "reg"], s.loc[killed.name, "seq_len"]) == ("gru", "bn", 7)
    assert "metrics.json" in s.loc[killed.name, "problem"]
    failed = s[s["status"] == "failed"].iloc[0]
    assert failed["error"] == "RuntimeError: out of memory" and pd.isna(failed["test_accuracy"])
    diverged = s[s["status"] == "diverged"].iloc[0]
    assert diverged["diverged_at_step"] == 7
    assert s.loc[s["status"].isin(["ok", "diverged", "failed"]), "problem"].isna().all()


def test_incomplete_folders_alone_are_reported_but_not_an_error(tmp_path, capsys):
    sweep = tmp_path / "inprogress"
    make_run(sweep, seed=0)
    (make_run(sweep, seed=1) / "metrics.json").unlink()  # a run still going (or killed): rerun the sweep
    assert aggregate.main([str(sweep)]) == 0
    assert "incomplete run folder" in capsys.readouterr().err


def test_run_id_mismatch_is_corrupt(tmp_path):
    sweep = tmp_path / "s"
    folder = make_run(sweep)
    m = json.loads((folder / "metrics.json").read_text())
    m["run_id"] = "0123456789ab"
    (folder / "metrics.json").write_text(json.dumps(m))
    a = aggregate.aggregate(sweep, warn=lambda msg: None)
    assert a.summary["status"].tolist() == ["corrupt"] and a.problems[0][0] == str(folder)


@pytest.mark.parametrize("rename", [False, True])
def test_a_copied_run_folder_is_named_and_left_out_of_the_tables(tmp_path, capsys, rename):
    """A copy keeps its record's run id (corrupt: it does not match the folder); a copy whose run id was edited
    to match is a second record of one training (duplicate). Either way the original stays, once."""
    import shutil

    sweep = tmp_path / "s"
    original = make_run(sweep, seed=0)
    make_run(sweep, seed=1)
    copy = shutil.copytree(original, sweep / "runs" / "ffffffffffff")
    if rename:
        m = json.loads((copy / "metrics.json").read_text())
        (copy / "metrics.json").write_text(json.dumps({**m, "run_id": copy.name}))
    assert aggregate.main([str(sweep)]) == 1
    err = capsys.readouterr().err
    s = pd.read_parquet(sweep / "summary.parquet")
    bad = s[s["path"] == str(copy)].iloc[0]
    assert bad["status"] == ("duplicate" if rename else "corrupt") and str(copy) in err
    assert (str(original) in bad["problem"]) == rename
    assert (s["status"] == "ok").sum() == 2
    for table in ("curves", "profiles"):  # the copy adds no curve: each run's rows once
        t = pd.read_parquet(sweep / f"{table}.parquet")
        assert t.groupby("run_id").size().nunique() == 1 and t["run_id"].nunique() == 2


@pytest.mark.parametrize("setup", ["missing", "empty", "no_runs"])
def test_missing_or_empty_results_folder_is_an_error_that_writes_nothing(tmp_path, capsys, setup):
    target = tmp_path / "results" / "nosuch"
    if setup == "empty":
        target.mkdir(parents=True)
    elif setup == "no_runs":
        (target / "runs").mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    assert aggregate.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "runs/<run_id>/metrics.json" in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_rewriting_leaves_no_temp_files(tmp_path):
    sweep = make_sweep(tmp_path, cells=("rnn",), tasks=("digits",), lens=(4,), seeds=(0,))
    assert aggregate.main([str(sweep)]) == 0
    assert aggregate.main([str(sweep)]) == 0
    names = sorted(p.name for p in sweep.iterdir())
    assert names == ["curves.parquet", "hydra", "profiles.parquet", "runs", "summary.csv", "summary.parquet"]
