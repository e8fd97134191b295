"""End to end: `experiment=smoke` through the real Hydra multirun, `make sweep`, aggregation and
the report; and a sweep interrupted (SIGINT, then SIGKILL) and re-run completes its grid with no
duplicated, lost or half-written runs, saying how many points it skipped; and `make sweep` of a study kept in its
own folder (its experiments, regime, task and arm on `hydra.searchpath`)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import benchmark as bm  # noqa: F401

from helpers import ENV, PLUGIN, ROOT, RUN_FILES, as_terminal_job, run, wait_for_runs
from synthetic_runs import parse_report

pytestmark = pytest.mark.sweep  # Hydra multiruns in subprocesses: `make test-sweeps`
SMOKE = yaml.safe_load((ROOT / "conf" / "experiment" / "smoke.yaml").read_text())
PARAMS = SMOKE["hydra"]["sweeper"]["params"]
CELLS, REGS = PARAMS["cell"].split(","), PARAMS["reg"].split(",")
LENS, SEEDS = [int(x) for x in str(PARAMS["task.seq_len"]).split(",")], [int(x) for x in str(PARAMS["seed"]).split(",")]
TASKS = [SMOKE.get("defaults", [{}])[0].get("override /task", "adding")]
GRID = set(itertools.product(TASKS, CELLS, REGS, LENS, SEEDS))


def sh(args: list[str]) -> subprocess.CompletedProcess:
    return run(args, check=True)


def sweep_cmd(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.run", "--multirun", "+experiment=smoke", f"results_dir={results}", *extra]


def check_grid_complete(sweep: Path) -> pd.DataFrame:
    """Every grid point once, each folder exactly the three files, every metrics.json complete."""
    folders = sorted(p for p in (sweep / "runs").iterdir())
    rows = []
    for f in folders:
        assert sorted(p.name for p in f.iterdir()) == RUN_FILES, f
        m = json.loads((f / "metrics.json").read_text())
        assert m["complete"] is True and m["status"] == "ok" and m["run_id"] == f.name, (f, m.get("error"))
        rows.append(
            {
                "task": m["task"],
                "cell": m["cell"],
                "reg": m["reg"],
                "seq_len": m["seq_len"],
                "seed": m["seed"],
                "run_id": m["run_id"],
                "mtime": (f / "metrics.json").stat().st_mtime_ns,
            }
        )
    df = pd.DataFrame(rows)
    keys = list(df[["task", "cell", "reg", "seq_len", "seed"]].itertuples(index=False, name=None))
    assert len(keys) == len(set(keys)) and set(keys) == GRID  # no duplicated, no lost points
    return df


def test_smoke_sweep_aggregate_report(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    sh(sweep_cmd(results))
    sweep = results / "smoke"
    check_grid_complete(sweep)
    assert (sweep / "hydra" / "multirun.yaml").exists()
    agg = sh([sys.executable, "-m", "benchmark.analysis.aggregate", str(sweep)])
    assert f"{len(GRID)} run folders ({len(GRID)} ok)" in agg.stdout
    s = pd.read_parquet(sweep / "summary.parquet")
    assert len(s) == len(GRID) and s["run_id"].is_unique
    rep = sh([sys.executable, "-m", "benchmark.analysis.report", str(sweep), "--out", str(reports / "smoke")])
    index = reports / "smoke" / "index.html"
    assert rep.stdout.strip().endswith(str(index.resolve()))
    html = index.read_text()
    p = parse_report(html)
    assert [(r["task"], r["seq_len"], r["cell"]) for r in p.verdict_rows] == [
        (t, T, c) for t in TASKS for T in LENS for c in CELLS
    ]  # one row per task x length x cell, in order
    assert [h.split(".")[0] for h in p.verdict_headers] == REGS  # every reg: none (baseline) and each treatment
    for r in p.verdict_rows:
        assert {v.split(".")[0] for v in r["verdicts"]} == set(REGS) - {"none"}
        # 2 seeds earn no word: too few seeds, or the gate's reason (two seeds rarely show that an arm learned)
        assert all(w == "too few seeds" or w.startswith("not testable: ") for w in r["verdicts"].values())
    for name in ("verdicts", "claims"):
        table = pd.read_csv(reports / "smoke" / f"{name}.csv")
        assert {
            "task",
            "seq_len",
            "cell",
            "variant",
            "endpoint",
            "n",
            "mean_diff",
            "ci_low",
            "ci_high",
            "p_value",
            "p_adjusted",
            "prob_improvement",
            "verdict",
        } <= set(table.columns)
        assert not set(table["verdict"]) & {"helps", "hurts"}
    assert len(p.imgs) >= 6 and all(src.startswith("data:image/png;base64,") for src in p.imgs)
    assert p.external == [] and p.scripts == 0
    for cell, reg in itertools.product(CELLS, REGS):  # every cell x reg in the tables
        assert re.search(rf"<td>{cell}</td>\s*<td>{reg}[.<]", html), (cell, reg)
    assert "python -m benchmark.run --multirun +experiment=smoke" in html


def test_interrupted_sweep_resumes_without_duplicates_or_losses(tmp_path):
    results = tmp_path / "results"
    sweep = results / "smoke"
    for sig, after in ((signal.SIGINT, 5), (signal.SIGKILL, 15)):
        proc = subprocess.Popen(
            sweep_cmd(results),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=as_terminal_job,
        )
        wait_for_runs(sweep, after, proc, mid_point=True)  # a kill inside a grid point
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=60) != 0  # it stopped mid-sweep
    done_before = {f.parent.name: f.stat().st_mtime_ns for f in (sweep / "runs").glob("*/metrics.json")}
    assert 15 <= len(done_before) < len(GRID)
    r = sh(
        [
            "make",
            "sweep",
            "EXPERIMENT=smoke",
            f"RESULTS_DIR={results}",
            f"REPORTS_DIR={tmp_path / 'reports'}",
            f"VPY={sys.executable}",
        ]
    )
    out = r.stdout + r.stderr
    assert f"sweep: skipped {len(done_before)} grid point(s) already complete" in out
    assert out.count("skipping complete run") == len(done_before)
    # the live progress display (a plain line when the output is not a terminal), counted from the results folder
    assert (
        f"sweep smoke: {len(GRID)}/{len(GRID)} grid points done, 0 failed, 0 diverged, {len(done_before)} skipped"
    ) in out
    df = check_grid_complete(sweep)
    unchanged = df[df["run_id"].isin(done_before)]
    assert (unchanged["mtime"] == unchanged["run_id"].map(done_before)).all()  # complete runs were not redone
    assert out.rstrip().splitlines()[-1] == f"report: {(tmp_path / 'reports' / 'smoke' / 'index.html').resolve()}"


# --- a study kept in its own folder: `make sweep ... ARGS="hydra.searchpath=[...]"` ------------------------------


def user_study(tmp_path: Path) -> Path:
    """The example study (its modules and conf/: task sign, arm noise, experiments my_grid and my_claims, regime
    my_sign) copied to a folder of its own, outside the package."""
    study = tmp_path / "study"
    shutil.copytree(PLUGIN, study, ignore=shutil.ignore_patterns("__pycache__"))
    return study


def make_user_sweep(study: Path, tmp_path: Path, experiment: str) -> subprocess.CompletedProcess:
    """`make sweep` from the study's folder, as docs/extending.md writes it (the package's Makefile and Python)."""
    make = ["make", "-f", str(ROOT / "Makefile"), "sweep", f"VPY={sys.executable}", f"EXPERIMENT={experiment}"]
    make += [f"RESULTS_DIR={tmp_path / 'results'}", f"REPORTS_DIR={tmp_path / 'reports'}", "LAUNCHER=basic"]
    make += [f"ARGS=hydra.searchpath=[file://{study / 'conf'}]"]
    return run(make, cwd=study, env={"PYTHONPATH": os.pathsep.join([str(study), str(ROOT)])}, timeout=300)


def test_make_sweep_runs_a_protocol_whose_experiment_and_regime_live_in_the_users_folder(tmp_path):
    """Tuning (1 seed x 2 arms), selection, confirmation (2 seeds derived from the hash), the report; the design
    frozen from the user's regime file; the user's arm described in its own words."""
    study = user_study(tmp_path)
    r = make_user_sweep(study, tmp_path, "my_claims")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    sweep = tmp_path / "results" / "my_claims"
    metrics = [json.loads(p.read_text()) for p in sweep.glob("runs/*/metrics.json")]
    design = json.loads((sweep / "plan" / "design.json").read_text())
    assert sorted((m["task"], m["reg"], m["seed"] in design["confirmation_seeds"]) for m in metrics) == sorted(
        [("sign", reg, False) for reg in ("none", "noise")] + [("sign", reg, True) for reg in ("none", "noise")] * 2
    )
    assert all(m["status"] == "ok" and m["steps_done"] == 6 for m in metrics)  # the user's regime's budget
    assert design["frozen"]["regimes"] == {"my_sign": yaml.safe_load((study / "conf/regime/my_sign.yaml").read_text())}
    html = (tmp_path / "reports" / "my_claims" / "index.html").read_text()
    assert "user variant: reg=noise: Gaussian noise on hidden non-recurrent connections" in html
    assert out.rstrip().splitlines()[-1] == f"report: {(tmp_path / 'reports' / 'my_claims' / 'index.html').resolve()}"


def test_make_sweep_runs_a_plain_experiment_of_the_users_folder(tmp_path):
    r = make_user_sweep(user_study(tmp_path), tmp_path, "my_grid")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "results" / "my_grid").glob("runs/*/metrics.json")]
    assert sorted((m["reg"], m["seed"], m["status"]) for m in metrics) == [
        (reg, seed, "ok") for reg in ("noise", "none") for seed in (0, 1)
    ]
    assert (tmp_path / "reports" / "my_grid" / "index.html").is_file()
