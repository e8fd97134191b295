"""Words that mean what they say, on synthetic run folders: no effect gives (almost) no words, a
real effect with enough seeds is found, learning rates are chosen on validation, directions
come from the run record; the analysis package imports no torch and the docs match the record."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import aggregate, comparisons, stats
from benchmark.core import record

from synthetic_runs import RUN_SD, make_run, make_sweep

ROOT = Path(__file__).resolve().parents[1]
NO_EFFECT = {"none": 0.0, "bn": 0.0, "dropout": 0.0, "both": 0.0}


def verdict_table(sweep: Path, **opts) -> pd.DataFrame:
    runs = comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary)
    return comparisons.verdicts(comparisons.select(runs), comparisons.Options(**opts))


def quick_sweep(root: Path, name: str, **kw) -> Path:
    return make_sweep(root, name, steps=2, multirun_yaml=False, **kw)


@pytest.mark.parametrize("adjust", ["bh", "holm"])
def test_no_real_effect_gives_words_on_at_most_5_percent_of_comparisons(tmp_path, adjust):
    sweep = quick_sweep(
        tmp_path, "null", tasks=("adding", "digits", "copy"), lens=(5,), seeds=range(10), effect=NO_EFFECT
    )
    t = verdict_table(sweep, adjust=stats.Adjust(adjust))
    assert len(t) == 3 * 3 * 3 and (t["n"] == 10).all()
    words = t["verdict"].isin([stats.HELPS, stats.HURTS]).mean()
    assert words <= 0.05, t[["task", "seq_len", "cell", "variant", "p_value", "p_adjusted", "verdict"]]
    # ... while the raw p-values do reject now and then: the correction is what keeps the words away
    assert (t["p_value"] < 0.05).sum() >= 1


def test_a_real_difference_of_one_and_a_half_sd_with_ten_seeds_reads_helps(tmp_path):
    sd_of_differences = RUN_SD * 2**0.5  # each run has its own noise RUN_SD; the seed's offset cancels
    effect = {"none": 0.0, "bn": 1.5 * sd_of_differences}
    one = quick_sweep(
        tmp_path,
        "one",
        tasks=("adding",),
        lens=(10,),
        cells=("lstm",),
        regs=("none", "bn"),
        seeds=range(10),
        effect=effect,
    )
    assert verdict_table(one)["verdict"].tolist() == [stats.HELPS]
    many = quick_sweep(
        tmp_path, "many", tasks=("adding", "digits"), lens=(5, 10), regs=("none", "bn"), seeds=range(10), effect=effect
    )
    t = verdict_table(many)
    assert (t["verdict"] == stats.HELPS).mean() >= 0.9 and not (t["verdict"] == stats.HURTS).any()


def test_a_row_whose_arms_both_sit_at_chance_is_not_testable_and_joins_no_family(tmp_path):
    """The exploratory verdicts pass the testability gate too: two arms at chance (score 0) get no word,
    keep their numbers, and leave the other rows' correction alone."""
    at_chance = {"none": -0.5, "bn": -0.5}  # synthetic runs score 0.5 + the effect
    t = verdict_table(
        quick_sweep(
            tmp_path,
            "chance",
            tasks=("adding",),
            lens=(10,),
            cells=("lstm",),
            regs=("none", "bn"),
            seeds=range(10),
            effect=at_chance,
        )
    )
    assert t["verdict"].iloc[0].startswith("not testable: no arm learned")
    assert t["mean_diff"].notna().all() and t["p_value"].notna().all() and t["p_adjusted"].isna().all()


def test_learning_rate_is_selected_on_validation_never_on_test(tmp_path):
    sweep = tmp_path / "lr"
    for s in range(6):
        for reg in ("none", "bn"):
            # lr 0.1: best on validation, worse on test; lr 0.01 the other way round
            make_run(sweep, reg=reg, seed=s, lr=0.1, val_score=0.8 + 0.01 * s, test_score=0.3 + 0.01 * s)
            make_run(sweep, reg=reg, seed=s, lr=0.01, val_score=0.6 + 0.01 * s, test_score=0.7 + 0.01 * s)
        # none also tried 0.001: the same validation scores as 0.1 (a tie), the best test scores
        make_run(sweep, reg="none", seed=s, lr=0.001, val_score=0.8 + 0.01 * s, test_score=0.9)
    runs = comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary)
    lt = comparisons.lr_table(runs)
    chosen = lt[lt["selected"]].set_index("variant")["lr"].to_dict()
    assert chosen == {"none": 0.001, "bn.recurrent": 0.1}  # validation-best; a tie goes to the smaller rate
    sel = comparisons.select(runs)
    assert sel.groupby("variant")["lr"].unique().map(list).to_dict() == {"none": [0.001], "bn.recurrent": [0.1]}
    assert len(sel) == 12
    t = comparisons.verdicts(sel, comparisons.Options())
    assert t[["lr", "baseline_lr"]].values.tolist() == [[0.1, 0.001]]


def test_runs_trained_to_a_target_select_the_rate_that_gets_there_first(tmp_path):
    sweep = tmp_path / "ttt"
    for s in range(5):
        # lr 0.03 reaches the target in 200 steps and stops there (val 0.95); 0.01 takes 1300 and ends a
        # little higher (0.97): the final score would pick 0.01, time to target picks 0.03
        make_run(sweep, seed=s, lr=0.03, val_score=0.95, steps=2000, stop_at_target=True, steps_to_target=200)
        make_run(sweep, seed=s, lr=0.01, val_score=0.97, steps=2000, stop_at_target=True, steps_to_target=1300)
        # lr 0.1: never reaches it in one seed, so the budget (2000) counts there: mean 520 > 200
        make_run(
            sweep,
            seed=s,
            lr=0.1,
            val_score=0.99 if s else 0.2,
            steps=2000,
            stop_at_target=True,
            steps_to_target=150 if s else None,
        )
    runs = comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary)
    lt = comparisons.lr_table(runs).set_index("lr")
    assert lt["time_to_target"].to_dict() == {0.01: 1300.0, 0.03: 200.0, 0.1: 520.0}
    assert lt.index[lt["selected"]].tolist() == [0.03]
    # without stop_at_target the same runs select on the final validation score
    plain = runs.assign(stop_at_target=False)
    assert comparisons.lr_table(plain).query("selected")["lr"].tolist() == [0.01]


def test_a_diverged_run_without_a_score_loses_the_selection(tmp_path):
    sweep = tmp_path / "div"
    for s in range(3):
        run = make_run(sweep, seed=s, lr=0.1, val_score=0.9, status="diverged" if s == 0 else "ok")
        make_run(sweep, seed=s, lr=0.01, val_score=0.5)
        if s == 0:  # diverged to NaN: no validation score
            m = json.loads((run / "metrics.json").read_text())
            (run / "metrics.json").write_text(json.dumps({**m, "val_score": None}))
    lt = comparisons.lr_table(comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary))
    assert lt.loc[lt["selected"], "lr"].tolist() == [0.01]


@pytest.mark.parametrize("task", ["sign_nll", "agree"])
def test_directions_come_from_the_record_not_from_names(tmp_path, task):
    """`nll` (lower is better) and `agreement` (higher is better): a better model has the better score
    either way, so the verdict reads helps; no analysis code knows either name."""
    sweep = quick_sweep(
        tmp_path,
        task,
        tasks=(task,),
        lens=(8,),
        cells=("gru",),
        regs=("none", "bn"),
        seeds=range(6),
        effect={"none": 0.0, "bn": 0.2},
    )
    runs = aggregate.aggregate(sweep, warn=lambda m: None).summary
    bn, none = runs[runs["reg"] == "bn"], runs[runs["reg"] == "none"]
    better_metric = bn["test_metric"].mean() > none["test_metric"].mean()
    assert better_metric == (task == "agree")  # the raw metric moves the declared way
    assert verdict_table(sweep)["verdict"].tolist() == [stats.HELPS]


def test_the_analysis_names_no_task_and_no_metric():
    names = re.compile(r"[\"'](adding|copy|digits|mse|cross_entropy|nll)[\"']|LOWER_IS_BETTER|lower_is_better\(")
    for path in sorted((ROOT / "benchmark" / "analysis").glob("*.py")):
        hits = [line for line in path.read_text().splitlines() if names.search(line)]
        assert not hits, (path.name, hits)


def test_analysis_imports_no_torch_in_a_fresh_interpreter():
    code = (
        "import sys, benchmark.analysis.report, benchmark.analysis.aggregate, benchmark.core.record; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_docs_table_is_the_run_record():
    docs = (ROOT / "docs" / "metrics.md").read_text()
    assert record.markdown_table() in docs
    assert record.markdown_table(record.HISTORY) in docs
