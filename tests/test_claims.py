"""The claims as the literature means them (benchmark/analysis/claims.py), on small run tables with
known answers: survival for time to target, distance from balance for the gradient probe, the
intersection-union tests of (c) and (d), Holm across claims and secondaries behind their primary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import claims
from benchmark.analysis import comparisons as cmp

SEEDS = range(10)
VARIANT = {"none": "none", "bn": "bn.recurrent", "dropout": "dropout.output", "both": "both.recurrent+output"}


def table(
    spec: dict[str, dict[str, object]],
    *,
    cell: str = "lstm",
    task: str = "digits",
    seq_len: int = 64,
    seed_sd: float = 0.05,
    noise: float = 0.01,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """One run per (arm, seed): `spec[arm]` gives column values (a number, or a callable of the seed)."""
    rng = np.random.default_rng(rng_seed)
    offset = rng.normal(0, seed_sd, len(SEEDS))
    rows = []
    for arm, cols in spec.items():
        for s in SEEDS:
            r = {
                "task": task,
                "seq_len": seq_len,
                "cell": cell,
                "variant": VARIANT[arm],
                "seed": s,
                "lr": 0.01,
                "dropout_p": np.nan,
                "status": "ok",
                "steps": 1000,
                "stop_at_target": False,
                "steps_to_target": np.nan,
                "hidden_grad_ratio_start": 1.0,
                "hidden_grad_ratio_end": 1.0,
                "val_score": 0.5,
                "test_score": 0.5,
            }
            for k, v in cols.items():
                r[k] = v(s) if callable(v) else v
            r["test_score"] += offset[s] + rng.normal(0, noise)  # every run: its seed's offset and its own noise
            r.setdefault("train_score", r["test_score"] + 0.1)
            rows.append(r)
    return pd.DataFrame(rows)


def rows_of(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    res = {r.claim.key: r for r in claims.run_claims(runs, cmp.Options())}[key]
    return res.rows


def test_a_time_to_target_is_survival_with_misses_censored():
    def none_t(s):  # none reaches the target at 600-900 in 7 of 10 seeds, misses (censored at 1000) in 3
        return 600.0 + 100 * (s % 4) if s < 7 else np.nan

    runs = table(
        {
            "none": {"steps_to_target": none_t, "stop_at_target": True},
            "bn": {"steps_to_target": lambda s: 200.0 + 100 * (s % 2), "stop_at_target": True},
        }
    )
    a = rows_of(runs, "a")
    assert list(a["endpoint"]) == ["rmst_to_target"] and list(a["verdict"]) == ["helps"]
    none_rmst = np.mean([600 + 100 * (s % 4) for s in range(7)] + [1000] * 3)  # no censoring before 1000
    assert a["baseline_mean"].iloc[0] == pytest.approx(none_rmst) and a["variant_mean"].iloc[0] == pytest.approx(250)
    assert "misses censored at 1000" in a["note"].iloc[0]
    nobody = table({"none": {"stop_at_target": True}, "bn": {"stop_at_target": True}})
    res = {r.claim.key: r for r in claims.run_claims(nobody, cmp.Options())}["a"]
    assert res.not_testable and "no run of either arm reached it" in res.not_testable


def test_b_an_exploding_profile_does_not_read_helps():
    vanishing = {
        "hidden_grad_ratio_start": lambda s: 10.0 ** (-8 - 0.3 * (s % 3)),
        "hidden_grad_ratio_end": lambda s: 10.0 ** (-6 - 0.3 * (s % 3)),
    }
    for bn_ratio, word in (
        (lambda s: 10.0 ** (0.2 * (s % 3) - 0.2), "helps"),  # near balance
        (lambda s: 10.0 ** (12 + 0.3 * (s % 3)), "hurts"),
    ):  # exploding: further from balance
        b = rows_of(table({"none": vanishing, "bn": {"hidden_grad_ratio_end": bn_ratio}}), "b")
        assert b.loc[b["role"] == "primary", "verdict"].tolist() == [word]


def test_c_needs_a_better_test_score_and_a_smaller_gap():
    none = {"test_score": 0.6, "train_score": lambda s: 0.9 + 0.01 * (s % 3)}
    better_and_curbed = {"test_score": 0.65, "train_score": lambda s: 0.8 + 0.01 * (s % 2)}
    underfit = {"test_score": 0.6, "train_score": lambda s: 0.62 + 0.01 * (s % 2)}  # gap shrinks, test does not rise
    assert rows_of(table({"none": none, "dropout": better_and_curbed}), "c")["verdict"].tolist() == ["helps"]
    c = rows_of(table({"none": none, "dropout": underfit}), "c")
    assert c["verdict"].tolist() != ["helps"] and c["note"].iloc[0].startswith("gap +")


def test_d_both_must_beat_bn_and_dropout_and_the_interaction_waits_for_it():
    base = {"none": {"test_score": 0.5}, "bn": {"test_score": 0.6}, "dropout": {"test_score": 0.55}}
    d = rows_of(table({**base, "both": {"test_score": 0.7}}), "d")
    prim = d[d["role"] == "primary"]
    assert prim["verdict"].tolist() == ["helps"] and prim["mean_diff"].iloc[0] == pytest.approx(0.1, abs=0.02)
    assert d.loc[d["role"] == "secondary", "verdict"].tolist() != [claims.DESCRIPTIVE]  # opened by the primary
    only_bn = rows_of(table({**base, "both": {"test_score": 0.6}}), "d")  # beats dropout, not bn
    assert only_bn.loc[only_bn["role"] == "primary", "verdict"].tolist() != ["helps"]
    assert only_bn.loc[only_bn["role"] == "secondary", "verdict"].tolist() == [claims.DESCRIPTIVE]


def test_f_bn_steadier_over_the_rate_grid_and_no_row_where_no_seed_ran_the_grid():
    """(f) on the seeds that ran both rates: BN's validation score moves less between them. At a length where
    each arm ran only its own chosen rate (the grid runs at the first length) there is nothing to compare."""
    grid = pd.concat(
        [
            table({"none": {"val_score": lambda s: 0.3 + 0.05 * (s % 3)}, "bn": {"val_score": 0.6}}).assign(lr=0.01),
            table({"none": {"val_score": 0.7}, "bn": {"val_score": lambda s: 0.62 + 0.01 * (s % 2)}}).assign(lr=0.03),
        ]
    )
    chosen = pd.concat([table({"none": {}}, seq_len=96).assign(lr=0.01), table({"bn": {}}, seq_len=96).assign(lr=0.03)])
    half = pd.concat(  # only none ran both rates: BN's side is missing, shown as such
        [table({"none": {}, "bn": {}}, seq_len=128).assign(lr=0.01), table({"none": {}}, seq_len=128).assign(lr=0.03)]
    )
    rows = rows_of(pd.concat([grid, chosen, half], ignore_index=True), "f")
    primary = rows[rows["role"] == "primary"].set_index("seq_len")
    assert list(primary.index) == [64, 128]
    assert primary.loc[64, "verdict"] == "helps" and primary.loc[64, "mean_diff"] > 0.2
    assert primary.loc[128, "verdict"] == "no data"


def test_g_gated_cells_vs_rnn_and_the_widening():
    parts = []
    for T, gap in ((50, 0.05), (200, 0.3)):
        for cell, score in (("rnn", 0.4), ("lstm", 0.4 + gap)):
            parts.append(table({"none": {"test_score": score}}, cell=cell, seq_len=T, rng_seed=T))
    g = rows_of(pd.concat(parts, ignore_index=True), "g")
    prim = g[g["role"] == "primary"].sort_values("seq_len")
    assert prim["verdict"].tolist() == ["helps", "helps"]
    assert g.loc[g["role"] == "secondary", "verdict"].tolist() == ["helps"]  # 0.05 -> 0.3 widens


def test_h_dropout_steadier_is_a_variance_ratio():
    rng = np.random.default_rng(3)
    wide, narrow = rng.normal(0.6, 0.08, 10), rng.normal(0.6, 0.01, 10)
    runs = table(
        {"none": {"test_score": lambda s: wide[s]}, "dropout": {"test_score": lambda s: narrow[s]}},
        seed_sd=0.0,
        noise=0.0,
    )
    h = rows_of(runs, "h")
    assert h["verdict"].tolist() == ["helps"]
    assert h["mean_diff"].iloc[0] == pytest.approx(np.log(wide.var(ddof=1) / narrow.var(ddof=1)))


def test_every_row_has_a_margin_an_mde_and_no_effect_needs_equivalence():
    runs = table({"none": {"test_score": 0.6}, "bn": {"test_score": 0.6}}, seed_sd=0.0, noise=0.001)
    e = rows_of(runs, "e")
    prim = e[e["role"] == "primary"]
    assert prim["verdict"].tolist() == ["no effect"] and prim["mde"].iloc[0] < 0.01
    noisy = rows_of(table({"none": {"test_score": 0.6}, "bn": {"test_score": 0.6}}, noise=0.1), "e")
    assert noisy.loc[noisy["role"] == "primary", "verdict"].tolist() == ["inconclusive"]
    assert (noisy["margin"] > 0).all() and noisy["mde"].notna().all()


def test_primary_rows_of_all_claims_are_one_holm_family():
    runs = table({"none": {"test_score": 0.6}, "bn": {"test_score": 0.62}, "dropout": {"test_score": 0.58}}, noise=0.02)
    t = claims.claims_table(claims.run_claims(runs, cmp.Options()))
    prim = t[(t["role"] == "primary") & t["p_adjusted"].notna()]
    p = prim["p_value"].to_numpy()
    holm = np.maximum.accumulate((len(p) - np.arange(len(p))) * np.sort(p))
    assert sorted(prim["p_adjusted"]) == pytest.approx(np.minimum(holm, 1.0))


def test_profiles_per_bn_gain_init_are_drawn_where_the_sweep_has_several():
    from benchmark.analysis import plots

    prof = pd.DataFrame(
        [
            {
                "run_id": f"{g}-{s}",
                "cell": "lstm",
                "which": w,
                "t": t,
                "bn_gain_init": g,
                "grad_norm": g ** (10 - t) + 1e-12,
            }
            for g in (0.1, 0.5, 1.0)
            for s in range(2)
            for w in ("start", "end")
            for t in range(1, 11)
        ]
    )
    fig = plots.gain_profiles(prof)
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    assert labels == ["γ=0.1", "γ=0.5", "γ=1"] and len(fig.axes) == 2  # start and end, one cell


def test_profiles_at_each_gain_init_are_drawn_per_setting_and_cell():
    from benchmark.analysis import plots

    prof = pd.DataFrame(
        [
            {
                "run_id": f"{task}-{cell}",
                "task": task,
                "seq_len": 10,
                "cell": cell,
                "which": f"init γ={g:g}",
                "t": t,
                "grad_norm": g ** (10 - t) + 1e-12,
            }  # fmt: skip
            for task in ("adding", "digits")
            for cell in ("lstm", "gru")
            for g in (0.1, 0.5, 1.0)
            for t in range(1, 11)
        ]
    )
    fig = plots.init_gain_profiles(prof)
    assert len(fig.axes) == 4  # 2 settings x 2 cells
    assert sorted(line.get_label() for line in fig.axes[0].get_lines()) == ["γ=0.1", "γ=0.5", "γ=1"]
