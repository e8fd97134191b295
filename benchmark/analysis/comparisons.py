"""From finished runs to comparisons: variant identity, learning-rate selection on validation,
per-point verdicts on the primary endpoint and aggregates across tasks (rliable-style).

Tidy in, tidy out: every function takes the summary table (one row per run, columns of the run
record) and returns a DataFrame. The primary endpoint is `test_score` (0 = the task's trivial
predictor, 1 = perfect, higher is better), so no task or metric name is ever consulted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection, Optional

import numpy as np
import pandas as pd

from benchmark.analysis import gate, stats
from benchmark.analysis.design import LEARNED_MARGIN
from benchmark.arms import variants

KEY = ["task", "seq_len", "cell"]  # one comparison point
BASELINE = "none"
PRIMARY = "test_score"
SELECT_BY = "val_score"
PRIMARY_MARGIN = 0.02  # equivalence margin of the test score: "no effect" = TOST shows |difference| < 0.02
# Regulariser families in the registry's order (none, bn, dropout, both, ln, zoneout, then any added).
REG_ORDER = list(dict.fromkeys(v.name.split(".")[0] for v in variants.all_variants()))
CELL_ORDER = ["rnn", "lstm", "gru"]


@dataclass(frozen=True)
class Options:
    """How comparisons are made (the report's command-line options)."""

    ci: stats.CI = stats.CI.t
    test: stats.Test = stats.Test.t
    adjust: stats.Adjust = stats.Adjust.bh
    min_seeds: int = stats.DEFAULT_MIN_SEEDS
    level: float = 0.95
    seed: int = 0
    n_boot: int = 2000

    @property
    def alpha(self) -> float:
        return 1.0 - self.level


def _present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def variant_name(reg: Any, bn: Any, dropout: Any, p: Any, with_p: bool) -> str:
    """reg name + placements: `none`, `bn.recurrent`, `dropout.output`, `both.recurrent+output` (+ `@p=` when a
    sweep holds several dropout probabilities)."""
    places = [str(x) for x in (bn, dropout) if _present(x)]
    name = str(reg) + ("." + "+".join(places) if places else "")
    return f"{name}@p={float(p):g}" if with_p and _present(p) else name


def add_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Add `variant` (see `variant_name`, then `setting_suffixes`) to a summary table."""
    df = df.copy()
    for c in ("reg", "bn_placement", "dropout_placement", "dropout_p", "impl", "impl_used", "lr"):
        if c not in df.columns:
            df[c] = np.nan
    with_p = df["dropout_p"].dropna().nunique() > 1
    names = [
        variant_name(*r, with_p)
        for r in df[["reg", "bn_placement", "dropout_placement", "dropout_p"]].itertuples(index=False)
    ]
    df["variant"] = [n + s for n, s in zip(names, setting_suffixes(df, names))]
    return df


def arm_settings(params: Any) -> dict[str, str]:
    """A run's `reg_params` (`tar.alpha=0 tar.beta=2`) as {key: value} ({} where it has none)."""
    if not _present(params):
        return {}
    return dict(item.split("=", 1) for item in str(params).split() if "=" in item)


def setting_suffixes(df: pd.DataFrame, names: list[str]) -> list[str]:
    """Per row, `[key=value ...]` of the arm settings that differ between runs of one name at one point (task,
    length, cell), '' where none do: two settings of one arm in one sweep (`reg.tar.beta=0.5,2`) are two
    variants, never merged. The built-in arms' names already carry what their sweeps vary (placements, p)."""
    if "reg_params" not in df.columns:
        return [""] * len(df)
    settings = [arm_settings(p) for p in df["reg_params"]]
    where = [c for c in KEY if c in df.columns]
    points = list(zip(*(df[c].astype(str) for c in where), names)) if where else [(n,) for n in names]
    seen: dict[tuple, dict[str, set[str]]] = {}
    for point, st in zip(points, settings):
        for k, v in st.items():
            seen.setdefault(point, {}).setdefault(k, set()).add(v)
    out = []
    for point, st in zip(points, settings):
        varying = [k for k, vs in seen.get(point, {}).items() if len(vs) > 1]
        out.append("[" + " ".join(f"{k}={st.get(k, '')}" for k in sorted(varying)) + "]" if varying else "")
    return out


def family(variant: str) -> str:
    """The regulariser a variant belongs to (`bn.recurrent` -> `bn`, `tar[tar.beta=2]` -> `tar`)."""
    return str(variant).split("[")[0].split(".")[0].split("@")[0]


def ordered(levels: Any, order: tuple[str, ...] | list[str] = ()) -> list[Any]:
    """The levels present, known ones (or their family) in `order` first, the rest sorted."""
    present = list(dict.fromkeys(v for v in levels if _present(v)))
    rank = {k: i for i, k in enumerate(order)}
    return sorted(present, key=lambda v: (rank.get(v, rank.get(family(v), len(rank))), str(v)))


def verdict_impl(done: pd.DataFrame) -> Optional[str]:
    """The impl changes speed, not the function: with several, comparisons use `auto` (or the commonest)."""
    impls = done["impl"].dropna()
    if impls.nunique() <= 1:
        return None
    return "auto" if (impls == "auto").any() else str(impls.value_counts().index[0])


# ----------------------------------------------------------------------------- learning-rate selection


def steps_to_target_or_budget(df: pd.DataFrame) -> pd.Series:
    """Steps until the validation score first reached the task's target; the step budget where it never did."""
    reached = pd.to_numeric(df.get("steps_to_target"), errors="coerce")
    return reached.fillna(pd.to_numeric(df.get("steps"), errors="coerce"))


def time_to_target(df: pd.DataFrame) -> pd.Series:
    """`steps_to_target_or_budget` for runs trained to a target (`stop_at_target`), NaN for the rest."""
    trained_to_target = df.get("stop_at_target", pd.Series(False, index=df.index)).fillna(False).astype(bool)
    return steps_to_target_or_budget(df).where(trained_to_target)


SETTINGS = ["lr", "dropout_p"]  # what selection chooses per variant (dropout_p: NaN where nothing drops out)
TUNING, CONFIRMATION, SAME_SEEDS = "tuning", "confirmation", "selection and test"  # seed roles


def base_variant(variant: str) -> str:
    """The variant without its dropout probability (`dropout.output@p=0.1` -> `dropout.output`)."""
    return str(variant).split("@")[0]


def lr_table(done: pd.DataFrame, tuning: Optional[Collection[int]] = None) -> pd.DataFrame:
    """Per point, variant and setting (lr, dropout_p): mean validation and test score over seeds,
    runs, and whether this setting is the selected one.

    Selection, on validation only: the setting with the best mean `val_score` over seeds; a run without
    a finite `val_score` (diverged to NaN) counts as the worst possible, so a setting where any seed broke
    loses to one where none did; ties go to the smaller rate (then the smaller p). Runs trained to a
    target (`stop_at_target`, time to target as AlgoPerf tunes for it) all end near the target score, so
    there the fewest mean steps to the validation target (the budget where a seed never reached it)
    selects first, and `val_score` breaks ties. The test split is never consulted.

    With `tuning` seeds (a protocol with confirmation seeds), only those seeds' runs select, once per
    task x length x cell x variant (the protocol tunes at every length), and the dropout probability is a
    setting chosen with the rate, not a variant.
    """
    d = done.assign(
        lr=done["lr"].astype(float),
        _sel=done[SELECT_BY].astype(float).fillna(-np.inf),
        _ttt=time_to_target(done),
        dropout_p=pd.to_numeric(done.get("dropout_p"), errors="coerce"),
    )
    where = KEY
    if tuning is not None:
        d = d[d["seed"].isin(list(tuning))].assign(variant=lambda x: x["variant"].map(base_variant))
        where = ["task", "seq_len", "cell"]
    cols = where + ["variant", *SETTINGS]
    t = (
        d.groupby(cols, dropna=False)
        .agg(
            val_score=("_sel", "mean"),
            time_to_target=("_ttt", "mean"),
            test_score=(PRIMARY, "mean"),
            runs=("seed", "size"),
        )
        .reset_index()
    )
    n = len(where) + 1
    t = t.sort_values(
        where + ["variant", "time_to_target", "val_score", *SETTINGS],
        ascending=[True] * n + [True, False, True, True],
        kind="stable",
        na_position="last",
    )
    t["selected"] = ~t.duplicated(where + ["variant"])
    return t.sort_values(cols).reset_index(drop=True)


def select(done: pd.DataFrame, tuning: Optional[Collection[int]] = None) -> pd.DataFrame:
    """The runs every comparison uses, with their `seed_role`.

    Without `tuning` seeds: every seed at each point's selected learning rate (selection and test on
    the same seeds: the luck of the choice carries into the test, so the words are exploratory).
    With them: only the other (confirmation) seeds, at the setting the tuning seeds selected.
    """
    if len(done) == 0:
        return done.assign(seed_role=pd.Series(dtype=object))
    chosen = lr_table(done, tuning)
    chosen = chosen.loc[chosen["selected"]].drop(
        columns=["val_score", "time_to_target", "test_score", "runs", "selected"]
    )
    d = done.assign(lr=done["lr"].astype(float), dropout_p=pd.to_numeric(done.get("dropout_p"), errors="coerce"))
    if tuning is None:
        return d.merge(chosen, on=list(chosen.columns), how="inner").assign(seed_role=SAME_SEEDS)
    conf = d[~d["seed"].isin(list(tuning))].assign(variant=lambda x: x["variant"].map(base_variant))
    return conf.merge(chosen, on=list(chosen.columns), how="inner").assign(seed_role=CONFIRMATION)


def seed_roles(done: pd.DataFrame, tuning: Optional[Collection[int]]) -> pd.DataFrame:
    """Which seed did what, per task (for the report and seeds.csv)."""
    rows = []
    for task, g in done.groupby("task", sort=True):
        seeds = sorted(int(x) for x in g["seed"].unique())
        tune = [x for x in seeds if tuning is not None and x in set(tuning)]
        rest = [x for x in seeds if x not in tune]
        if tuning is None:
            rows.append({"task": task, "role": SAME_SEEDS, "seeds": " ".join(map(str, rest)), "n": len(rest)})
            continue
        rows += [
            {"task": task, "role": TUNING, "seeds": " ".join(map(str, tune)), "n": len(tune)},
            {"task": task, "role": CONFIRMATION, "seeds": " ".join(map(str, rest)), "n": len(rest)},
        ]
    return pd.DataFrame(rows, columns=["task", "role", "seeds", "n"])


# ----------------------------------------------------------------------------- comparisons


def _by_seed(g: pd.DataFrame, value: str, sign: float) -> pd.Series:
    """One value per seed (the mean where a seed ran more than once), oriented by `sign`."""
    v = pd.Series(g[value].to_numpy(float), index=g["seed"].to_numpy())
    return sign * (v.groupby(level=0).mean() if v.index.has_duplicates else v)


def compare_rows(
    runs: pd.DataFrame,
    pairs: list[tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]],
    endpoint: str,
    higher_is_better: bool,
    opts: Options,
) -> list[dict[str, Any]]:
    """One row per (labels, treatment runs, baseline runs), oriented so that + = improvement."""
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for labels, treat, base in pairs:
        key = "|".join(f"{v}" for v in (*labels.values(), endpoint))
        c = stats.compare(
            _by_seed(treat, endpoint, sign),
            _by_seed(base, endpoint, sign),
            ci=opts.ci,
            test=opts.test,
            level=opts.level,
            seed=opts.seed,
            key=key,
        )
        rows.append(
            {
                **labels,
                "endpoint": endpoint,
                "higher_is_better": higher_is_better,
                **c.as_dict(),
                "variant_mean": treat[endpoint].mean(),
                "baseline_mean": base[endpoint].mean(),
            }
        )
    return rows


COLUMNS = [
    "task",
    "seq_len",
    "cell",
    "variant",
    "baseline",
    "lr",
    "baseline_lr",
    "endpoint",
    "higher_is_better",
    "n",
    "n_treat",
    "n_base",
    "paired",
    "variant_mean",
    "baseline_mean",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "margin",
    "p_equivalent",
    "mde",
    "prob_improvement",
    "verdict",
]


def verdicts(selected: pd.DataFrame, opts: Options, learned_margin: float = LEARNED_MARGIN) -> pd.DataFrame:
    """Every variant vs `none` at every (task, seq_len, cell) on `test_score`, one family of the rows that
    pass the testability gate (benchmark/analysis/gate.py: either arm learned, the score not pinned by a stop
    at the target, equal budgets); a row that fails reads "not testable: <reason>" with its numbers.

    Columns: see `COLUMNS` (documented in docs/statistics.md).
    """
    pairs = []
    for keys, g in selected.groupby(KEY, sort=True):
        base = g[g["variant"] == BASELINE]
        for v in ordered(g["variant"].unique(), REG_ORDER):
            if v == BASELINE:
                continue
            treat = g[g["variant"] == v]
            labels = {
                **dict(zip(KEY, keys)),
                "variant": v,
                "baseline": BASELINE,
                "lr": treat["lr"].iloc[0],
                "baseline_lr": base["lr"].iloc[0] if len(base) else np.nan,
            }
            pairs.append((labels, treat, base))
    rows = compare_rows(selected, pairs, PRIMARY, True, opts)
    t = pd.DataFrame(
        rows, columns=[c for c in COLUMNS if c not in ("p_adjusted", "p_equivalent", "mde", "verdict")] + ["se", "df"]
    ).assign(margin=PRIMARY_MARGIN)
    check = lambda tr, b: gate.check(  # noqa: E731
        {"variant": tr, BASELINE: b}, rule=gate.EITHER, score=PRIMARY, margin=learned_margin, level=opts.level
    )
    reasons = pd.Series([check(tr, b) for _, tr, b in pairs], index=t.index, dtype=object)
    words = lambda r: stats.add_words(  # noqa: E731
        r, adjust_method=opts.adjust, min_seeds=opts.min_seeds, alpha=opts.alpha, test=opts.test
    )
    t = gate.worded(t, reasons, words)
    return sort_rows(t)[COLUMNS]


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Reading order: task, length, cell (rnn, lstm, gru), variant (none, bn, dropout, both, others)."""
    if len(df) == 0:
        return df.reset_index(drop=True)
    rank_cell = {c: i for i, c in enumerate(ordered(df["cell"].unique(), CELL_ORDER))} if "cell" in df else {}
    rank_var = {v: i for i, v in enumerate(ordered(df["variant"].unique(), REG_ORDER))} if "variant" in df else {}
    keys = [c for c in ("task", "seq_len") if c in df]
    out = df.assign(_c=df["cell"].map(rank_cell) if rank_cell else 0, _v=df["variant"].map(rank_var) if rank_var else 0)
    return out.sort_values(keys + ["_c", "_v"], kind="stable").drop(columns=["_c", "_v"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- aggregates


AGG_COLUMNS = [
    "cell",
    "variant",
    "tasks",
    "runs",
    "min_seeds_per_task",
    *stats.AGGREGATE_KEYS,
    "level",
    "verdict",
]


def aggregates(selected: pd.DataFrame, opts: Options) -> pd.DataFrame:
    """Per cell x variant across every (task, seq_len): IQM of test scores, its difference to `none`
    and the probability of improvement, with stratified-bootstrap intervals at the Bonferroni level
    1 - alpha / m (m = rows), so that the words hold jointly. Word: `helps` when both intervals
    clear (IQM difference above 0 and P(improve) above 0.5), `hurts` when both fall below, else
    `inconclusive`; `too few seeds` below `min_seeds` runs in any task; `too few tasks` across fewer
    than `stats.MIN_TASKS` tasks (with one or two tasks a "general" word is one task's word again:
    its false-word rate under no effect was measured at 3.5 % against a nominal 1.7 %). Exploratory."""
    combos = [
        (c, v)
        for c in ordered(selected["cell"].unique(), CELL_ORDER)
        for v in ordered(selected.loc[selected["cell"] == c, "variant"].unique(), REG_ORDER)
        if v != BASELINE
    ]
    level = 1 - opts.alpha / max(1, len(combos))
    rows = []
    for cell, v in combos:
        g = selected[(selected["cell"] == cell) & selected[PRIMARY].notna()]
        parts = {k: s for k, s in g.groupby(["task", "seq_len"]) if {v, BASELINE} <= set(s["variant"])}
        strata = sorted(parts)
        treat = [parts[k].loc[parts[k]["variant"] == v, PRIMARY].to_numpy(float) for k in strata]
        base = [parts[k].loc[parts[k]["variant"] == BASELINE, PRIMARY].to_numpy(float) for k in strata]
        r = stats.stratified(treat, base, level=level, n_resamples=opts.n_boot, seed=opts.seed, key=f"{cell}|{v}")
        fewest = min((min(len(a), len(b)) for a, b in zip(treat, base)), default=0)
        if not strata:
            word = stats.NO_DATA
        elif len({k[0] for k in strata}) < stats.MIN_TASKS:
            word = stats.TOO_FEW_TASKS
        elif fewest < opts.min_seeds:
            word = stats.TOO_FEW
        elif r["iqm_diff_low"] > 0 and r["poi_low"] > 0.5:
            word = stats.HELPS
        elif r["iqm_diff_high"] < 0 and r["poi_high"] < 0.5:
            word = stats.HURTS
        else:
            word = stats.UNCLEAR
        rows.append(
            {
                "cell": cell,
                "variant": v,
                "tasks": len(strata),
                "runs": sum(map(len, treat + base)),
                "min_seeds_per_task": fewest,
                **r,
                "level": level,
                "verdict": word,
            }
        )
    return pd.DataFrame(rows, columns=AGG_COLUMNS)
