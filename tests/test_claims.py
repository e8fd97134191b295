"""The claims as the literature means them (benchmark/analysis/claims.py), on small run tables with known
answers: the testability gate, each claim's endpoint, one confirmatory test per claim from a declared
design (Holm over the claims only, the per-point rows their own BH family), and the exploratory mode of a
sweep without a design."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import claims, controls, design, families, gate, stats
from benchmark.analysis import comparisons as cmp
from benchmark.core.config import ConfigError

SEEDS = range(10)
VARIANT = {"none": "none", "bn": "bn.recurrent", "dropout": "dropout.output", "both": "both.recurrent+output"}


def table(
    spec: dict[str, dict[str, object]],
    *,
    cell: str = "lstm",
    task: str = "digits",
    seq_len: int = 64,
    seeds=SEEDS,
    seed_sd: float = 0.05,
    noise: float = 0.01,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """One run per (arm, seed): `spec[arm]` gives column values (a number, or a callable of the seed)."""
    rng = np.random.default_rng(rng_seed)
    seeds = list(seeds)
    offset = dict(zip(seeds, rng.normal(0, seed_sd, len(seeds))))
    rows = []
    for arm, cols in spec.items():
        for s in seeds:
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
                "val_score": 0.5,
                "test_score": 0.5,
            }
            for k, v in cols.items():
                r[k] = v(s) if callable(v) else v
            r["test_score"] += offset[s] + rng.normal(0, noise)  # every run: its seed's offset and its own noise
            r.setdefault("train_score", r["test_score"] + 0.1)
            rows.append(r)
    return pd.DataFrame(rows)


def results(runs: pd.DataFrame, dsg=None, opts=cmp.Options()) -> dict[str, claims.ClaimResult]:
    return {r.claim.key: r for r in claims.run_claims(runs, opts, design=dsg)}


def rows_of(runs: pd.DataFrame, key: str, role: str = claims.POINT, dsg=None) -> pd.DataFrame:
    rows = results(runs, dsg)[key].rows
    return rows[rows["role"] == role].reset_index(drop=True)


def a_design(**claim_specs) -> design.Design:
    """A design declaring the given claims: {key: {"points": [...], ...}}."""
    return design.parse({"experiment": "t", "hash": "abc123", "design": {"claims": claim_specs}})


AT = {"task": "digits", "seq_len": 64, "cell": "lstm"}


# ----------------------------------------------------------------------------- the gate


def test_both_arms_at_chance_is_not_testable_in_every_simulated_sweep():
    """300 simulated comparisons of two arms at chance (score 0 +- noise, 10 seeds): the gate refuses
    every one where both arms must learn, and 99 % where one arm may suffice ((g)); through the whole
    pipeline no claim on the test score words a row where every arm sits at chance: each reads "not
    testable" and keeps its numbers."""
    rng, either = np.random.default_rng(0), 0
    for _ in range(300):
        sd = rng.uniform(0.005, 0.1)
        arms = {a: pd.DataFrame({"test_score": rng.normal(0, sd, 10), "steps": 100}) for a in ("bn", "none")}
        assert gate.check(arms, rule=gate.BOTH, margin=0.05)
        either += bool(gate.check(arms, rule=gate.EITHER, margin=0.05))
    assert either >= 297
    for i in range(1):
        spec = {arm: {"test_score": 0.0, "train_score": lambda s: 0.3} for arm in ("none", "bn", "dropout", "both")}
        runs = table(spec, seed_sd=0.03, noise=0.03, rng_seed=i)
        for key in ("c", "d", "e", "h"):
            r = rows_of(runs, key)
            assert r["verdict"].str.startswith("not testable").all(), (i, key, r["verdict"].tolist())
            assert r["verdict"].str.contains("learned").all() and r["mean_diff"].notna().all()


def test_one_arm_at_chance_fails_the_regulariser_claims_but_not_g():
    e = rows_of(table({"none": {"test_score": -0.5}, "bn": {"test_score": 0.3}}), "e")
    assert e["verdict"].iloc[0].startswith("not testable: none did not learn")
    trained = {"stop_at_target": True}
    gated = table({"none": {**trained, "steps_to_target": lambda s: 300.0 + 25 * (s % 4)}}, cell="lstm")
    rnn = table({"none": trained}, cell="rnn")  # never reaches the target: censored at the budget
    g = rows_of(pd.concat([gated, rnn]), "g")
    assert g["verdict"].tolist() == ["helps"]  # that the tanh RNN cannot learn is the claim itself
    both_fail = rows_of(pd.concat([gated.assign(steps_to_target=np.nan), rnn]), "g")
    assert both_fail["verdict"].iloc[0].startswith("not testable: lstm and rnn never reached the target")


def test_unequal_budgets_pinned_scores_and_different_checkpoints_are_not_testable():
    runs = table({"none": {"test_score": 0.5}, "bn": {"test_score": 0.6, "steps": 400}})
    assert "unequal budgets (bn.recurrent 400, none 1000 steps)" in rows_of(runs, "e")["verdict"].iloc[0]
    reached = {"stop_at_target": True, "steps_to_target": 300.0}
    pinned = table({"none": reached, "bn": {**reached, "test_score": 0.6}})
    assert rows_of(pinned, "e")["verdict"].iloc[0].startswith("not testable: pinned")
    # where the baseline's runs never reach the target, the scores differ by more than an overshoot
    missed = table({"none": {"stop_at_target": True, "test_score": 0.3}, "bn": {**reached, "test_score": 0.6}})
    assert "pinned" not in rows_of(missed, "e")["verdict"].iloc[0]
    ckpt = table({"none": {"test_checkpoint": "last"}, "bn": {"test_checkpoint": "best_val"}})
    assert "different checkpoints" in rows_of(ckpt, "e")["verdict"].iloc[0]


# ----------------------------------------------------------------------------- the endpoints


def test_a_is_a_ratio_of_restricted_means_with_misses_censored():
    def none_t(s):  # none reaches the target at 600-900 in 7 of 10 seeds, misses (censored at 1000) in 3
        return 600.0 + 100 * (s % 4) if s < 7 else np.nan

    spec = {
        "none": {"steps_to_target": none_t, "stop_at_target": True},
        "bn": {"steps_to_target": lambda s: 200.0 + 100 * (s % 2), "stop_at_target": True},
    }
    a = rows_of(table(spec), "a")
    assert list(a["endpoint"]) == ["rmst_ratio"] and list(a["verdict"]) == ["helps"]
    none_rmst = np.mean([600 + 100 * (s % 4) for s in range(7)] + [1000] * 3)  # no censoring before 1000
    assert a["baseline_mean"].iloc[0] == pytest.approx(none_rmst) and a["variant_mean"].iloc[0] == pytest.approx(250)
    assert a["mean_diff"].iloc[0] == pytest.approx(math.log(none_rmst / 250))
    assert "reached the target 10/10 vs 7/10" in a["note"].iloc[0] and "log-rank (permutation) p" in a["note"].iloc[0]
    assert a["margin"].iloc[0] == pytest.approx(math.log(1.25))
    nobody = table({"none": {"stop_at_target": True}, "bn": {"stop_at_target": True}})
    assert rows_of(nobody, "a")["verdict"].iloc[0] == "not testable: bn.recurrent and none never reached the target"
    untrained = table({"none": {"steps_to_target": 500.0}, "bn": {"steps_to_target": 300.0}})
    assert "not trained to a target" in rows_of(untrained, "a")["verdict"].iloc[0]


def test_b_reads_the_filled_init_probe_capped_and_an_exploding_profile_does_not_help():
    vanishing = {"hidden_grad_ratio_init_filled": lambda s: 10.0 ** (-5 - 0.3 * (s % 3))}
    for bn_ratio, word in (
        (lambda s: 10.0 ** (0.2 * (s % 3) - 0.2), "helps"),  # near balance
        (lambda s: 10.0 ** (30 + 0.3 * (s % 3)), "hurts"),  # exploding: further from balance (capped at 8)
    ):
        b = rows_of(table({"none": vanishing, "bn": {"hidden_grad_ratio_init_filled": bn_ratio}}), "b")
        assert b["verdict"].tolist() == [word]
    exploding = rows_of(table({"none": vanishing, "bn": {"hidden_grad_ratio_init_filled": 1e30}}), "b")
    assert exploding["variant_mean"].iloc[0] == 8.0  # the cap: 30 decades count as 8
    dead = {"hidden_grad_ratio_init_filled": 1e-20}
    assert (
        "pinned: every run of both arms at the cap of 8 decades"
        in rows_of(table({"none": dead, "bn": dead}), "b")["verdict"].iloc[0]
    )
    old = rows_of(table({"none": {}, "bn": {}}), "b")  # a sweep without the probe: no data, no crash
    assert old["verdict"].iloc[0].startswith("not testable: no probe at initialisation")


def test_endpoints_need_no_gradient_columns_and_the_claims_no_optional_column():
    runs = table({"none": {}, "bn": {}}).drop(columns=["train_score"])
    d = claims.endpoints(runs)
    assert d["grad_balance_init"].isna().all() and d["score_gap"].isna().all()
    bare = table({a: {} for a in ("none", "bn", "dropout", "both")})
    bare = bare[["task", "seq_len", "cell", "variant", "seed", "lr", "status", "test_score"]]  # a damaged table
    rows = claims.claims_table(claims.run_claims(bare, cmp.Options(), design=a_design(a={"points": [AT]})))
    assert len(rows) and rows["verdict"].notna().all()  # no data reads as such; nothing raises


def test_c_is_the_held_out_score_where_none_overfits_and_the_gap_is_descriptive():
    """With early stopping each arm is scored at its own best checkpoint: dropout may let training go on and
    fit more (a larger gap) while generalising better; (c) reads the test score, the gap is shown beside."""
    none = {"test_score": 0.6, "train_score": lambda s: 0.75 + 0.01 * (s % 3)}
    longer = {"test_score": lambda s: 0.65 + 0.01 * (s % 2), "train_score": lambda s: 0.85 + 0.01 * (s % 2)}
    assert rows_of(table({"none": none, "dropout": longer}), "c")["verdict"].tolist() == ["helps"]
    gap = rows_of(table({"none": none, "dropout": longer}), "c", claims.SECONDARY)
    assert gap["endpoint"].tolist() == ["score_gap"] and gap["mean_diff"].iloc[0] < 0  # larger gap, still helps
    worse = rows_of(table({"none": none, "dropout": {"test_score": 0.5}}), "c")
    assert worse["verdict"].tolist() == ["hurts"] and worse["endpoint"].iloc[0] == "test_score"
    no_overfit = rows_of(table({"none": {"train_score": lambda s: 0.5}, "dropout": longer}), "c")
    assert "none does not overfit" in no_overfit["verdict"].iloc[0]


def test_the_intersection_union_row_is_one_component_with_its_two_sided_p():
    """(d) where `both` beats `dropout` clearly and `bn` only a little: the row is the comparison with `bn`
    (the component with the larger p), with its own effect, interval, p (two-sided), se and MDE."""
    base = {"none": {"test_score": 0.5}, "dropout": {"test_score": 0.55}}
    bn = {"test_score": lambda s: 0.69 + 0.002 * (s % 3)}
    runs = table({**base, "bn": bn, "both": {"test_score": lambda s: 0.7 + 0.003 * (s % 4)}})
    c = rows_of(runs, "d").iloc[0]
    d = claims.endpoints(runs)
    per = d.pivot_table(index="seed", columns="variant", values="test_score")
    diff = per["both.recurrent+output"] - per["bn.recurrent"]
    ref = stats.compare(diff, pd.Series(0.0, index=diff.index))
    assert c["endpoint"] == "test_score" and c["mean_diff"] == pytest.approx(diff.mean())
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert c["p_value"] == pytest.approx(ref.p_value)  # two-sided, the same test the interval comes from
    assert c["se"] == pytest.approx(ref.se) and c["mde"] >= stats.mde(ref.se, ref.df, 0.05)  # at its family's level
    assert c["note"].startswith("intersection-union: the row is the component test_score vs bn")


def test_d_both_must_beat_bn_and_dropout_and_the_interaction_is_descriptive():
    base = {"none": {"test_score": 0.5}, "bn": {"test_score": 0.6}, "dropout": {"test_score": 0.55}}
    runs = table({**base, "both": {"test_score": 0.7}})
    d = rows_of(runs, "d")
    assert d["verdict"].tolist() == ["helps"] and d["mean_diff"].iloc[0] == pytest.approx(0.1, abs=0.02)
    assert rows_of(runs, "d", claims.SECONDARY)["verdict"].tolist() == [families.DESCRIPTIVE]
    only_bn = rows_of(table({**base, "both": {"test_score": 0.6}}), "d")  # beats dropout, not bn
    assert only_bn["verdict"].tolist() != ["helps"]


def grid_runs(widths: dict[str, int], lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1)) -> pd.DataFrame:
    """A rate grid where arm's validation score is 0.8 at its `width` central rates and 0.3 elsewhere."""
    parts = []
    for arm, w in widths.items():
        good = set(range(len(lrs) // 2 - w // 2, len(lrs) // 2 - w // 2 + w))
        for i, lr in enumerate(lrs):
            val = 0.8 if i in good else 0.3
            parts.append(table({arm: {"val_score": lambda s, v=val: v + 0.01 * (s % 3)}}).assign(lr=lr))
    return pd.concat(parts, ignore_index=True)


def test_f_is_the_width_of_the_good_rates_on_a_log_grid():
    runs = grid_runs({"none": 1, "bn": 3})
    chosen = runs[runs["lr"] == 1e-2]
    r = {x.claim.key: x for x in claims.run_claims(chosen, cmp.Options(), runs)}["f"].rows
    prim = r[r["role"] == claims.POINT].iloc[0]
    step = 0.5  # the grid's spacing in decades (its steps are x3 and x3.33)
    assert prim["verdict"] == "helps" and prim["mean_diff"] == pytest.approx(2 * step, rel=0.05)
    assert prim["variant_mean"] == pytest.approx(3 * step, rel=0.05)  # three rates wide
    two = grid_runs({"none": 1, "bn": 1}, lrs=(1e-2, 3e-2))
    r2 = {x.claim.key: x for x in claims.run_claims(two[two["lr"] == 1e-2], cmp.Options(), two)}["f"].rows
    assert "a grid of 2 rates" in r2.loc[r2["role"] == claims.POINT, "verdict"].iloc[0]


def test_g_gated_cells_vs_rnn_in_time_to_target_at_equal_budgets_and_the_widening():
    """(g) on runs trained to a target: the tanh RNN's restricted mean time (misses censored at the budget)
    over the gated cell's; the widening of the test-score gap from the shortest to the longest length is
    descriptive."""
    parts = []
    for T, gap in ((50, 0.05), (200, 0.3)):
        for cell, score in (("rnn", 0.4), ("lstm", 0.4 + gap)):
            reach = (lambda s: 900.0 + 20 * (s % 3)) if cell == "rnn" and T == 50 else (lambda s: 300.0 + 20 * (s % 4))
            ttt = np.nan if cell == "rnn" and T == 200 else reach
            spec = {"test_score": score, "stop_at_target": True, "steps_to_target": ttt}
            parts.append(table({"none": spec}, cell=cell, seq_len=T, rng_seed=T))
    runs = pd.concat(parts, ignore_index=True)
    g = rows_of(runs, "g")
    assert g["verdict"].tolist() == ["helps", "helps"] and (g["endpoint"] == "rmst_ratio").all()
    assert g["mean_diff"].iloc[1] > g["mean_diff"].iloc[0] > 0  # log(rnn / lstm): larger where rnn never reaches
    w = rows_of(runs, "g", claims.SECONDARY)
    assert w["endpoint"].tolist() == ["widening"] and w["mean_diff"].iloc[0] == pytest.approx(0.25, abs=0.03)


def test_h_needs_the_seeds_that_resolve_the_declared_ratio():
    rng = np.random.default_rng(3)
    wide, narrow = rng.normal(0.6, 0.08, 10), rng.normal(0.6, 0.01, 10)
    spec = {"none": {"test_score": lambda s: wide[s]}, "dropout": {"test_score": lambda s: narrow[s]}}
    h = rows_of(table(spec, seed_sd=0.0, noise=0.0), "h")
    assert h["verdict"].iloc[0].startswith("not testable at this budget: needs n ≈ ")  # the numbers stay
    assert "(has 10)" in h["verdict"].iloc[0] and np.isfinite(h["mean_diff"].iloc[0])
    seeds = range(90)
    wide, narrow = rng.normal(0.6, 0.08, 90), rng.normal(0.6, 0.02, 90)
    h = rows_of(table(spec, seeds=seeds, seed_sd=0.0, noise=0.0), "h")
    assert h["verdict"].tolist() == ["helps"]
    z = lambda x: np.abs(x - np.median(x)).mean()  # noqa: E731
    assert h["mean_diff"].iloc[0] == pytest.approx(math.log(z(wide) / z(narrow)))


# ----------------------------------------------------------------------------- one test per claim


def two_lengths() -> pd.DataFrame:
    return pd.concat(
        [
            table({"none": {"test_score": 0.5}, "bn": {"test_score": 0.52}, "dropout": {"test_score": 0.49}}, seq_len=T)
            for T in (64, 96)
        ],
        ignore_index=True,
    )


def test_a_declared_stratified_test_is_the_claims_one_row_and_holm_runs_over_the_claims_only():
    runs = two_lengths()
    pts = [{**AT, "seq_len": 64}, {**AT, "seq_len": 96}]
    dsg = a_design(e={"points": pts, "margin": 0.02}, c={"points": [AT]}, h={"needs": "claims_gpu", "why": "n ≈ 90"})
    res = results(runs, dsg)
    e = res["e"].primary
    d = claims.endpoints(runs)
    per_seed = sum(  # each seed's mean over the two lengths of bn - none
        d[(d["seq_len"] == T) & (d["variant"] == v)].set_index("seed")["test_score"] * sgn / 2
        for T in (64, 96)
        for v, sgn in (("bn.recurrent", 1), ("none", -1))
    )
    assert e["points"] == "digits T=64 lstm; digits T=96 lstm" and pd.isna(e["seq_len"])
    assert e["mean_diff"] == pytest.approx(per_seed.mean()) and e["n"] == 10
    prim = pd.concat([r.rows[r.rows["role"] == claims.PRIMARY] for r in res.values()])
    fam = prim[prim["p_adjusted"].notna()]
    assert len(fam) <= 2 and set(prim["claim"]) <= {"c", "e"}  # (h) needs the GPU: no row
    p = np.sort(fam["p_value"].to_numpy())
    assert sorted(fam["p_adjusted"]) == pytest.approx(
        np.minimum(np.maximum.accumulate((len(p) - np.arange(len(p))) * p), 1)
    )
    assert res["h"].status == "needs the GPU regime (claims_gpu): n ≈ 90" and res["h"].primary is None
    assert res["a"].status.startswith("not declared in the design")
    point = res["e"].rows[res["e"].rows["role"] == claims.POINT]
    assert len(point) == 2 and point["verdict"].notna().all()  # per-point rows: their own (BH) family


def test_a_declared_point_that_fails_the_gate_is_left_out_and_named():
    runs = two_lengths()
    runs.loc[(runs["seq_len"] == 96), "test_score"] -= 0.6  # both arms at chance at T=96
    dsg = a_design(e={"points": [{**AT, "seq_len": 64}, {**AT, "seq_len": 96}]})
    e = results(runs, dsg)["e"].primary
    assert e["points"] == "digits T=64 lstm" and "left out: digits T=96 lstm: no arm learned" in e["note"]
    runs.loc[(runs["seq_len"] == 64), "test_score"] -= 0.6
    e = results(runs, dsg)["e"].primary
    assert e["verdict"].startswith("not testable: no declared point passes the gate") and np.isfinite(e["mean_diff"])
    missing = results(runs, a_design(e={"points": [{**AT, "seq_len": 128}]}))["e"]
    assert missing.primary is None and "the sweep has no runs of the claim's arms there" in missing.status


def test_without_a_design_the_per_point_rows_are_exploratory_and_one_holm_family():
    res = results(two_lengths())
    assert all(r.status == claims.EXPLORATORY and r.primary is None for r in res.values())
    t = claims.claims_table(list(res.values()))
    fam = t[(t["role"] == claims.POINT) & t["p_adjusted"].notna()]
    p = np.sort(fam["p_value"].to_numpy())
    holm = np.minimum(np.maximum.accumulate((len(p) - np.arange(len(p))) * p), 1)
    assert sorted(fam["p_adjusted"]) == pytest.approx(holm)


def test_every_row_has_a_margin_an_mde_and_no_effect_needs_equivalence():
    runs = table({"none": {"test_score": 0.6}, "bn": {"test_score": 0.6}}, seed_sd=0.0, noise=0.001)
    e = rows_of(runs, "e")
    assert e["verdict"].tolist() == ["no effect"] and e["mde"].iloc[0] < 0.01
    noisy = rows_of(table({"none": {"test_score": 0.6}, "bn": {"test_score": 0.6}}, noise=0.1), "e")
    assert noisy["verdict"].tolist() == ["inconclusive"]
    assert (noisy["margin"] > 0).all() and noisy["mde"].notna().all()


def test_the_instrument_check_passes_a_clear_control_and_fails_a_blind_one():
    runs = pd.concat(
        [
            table({"none": {"stop_at_target": True}}, cell="rnn", seq_len=100, task="adding"),
            table(
                {"none": {"stop_at_target": True, "steps_to_target": lambda s: 300.0 + 25 * (s % 4)}},
                cell="lstm",
                seq_len=100,
                task="adding",
            ),
            table({"none": {"test_score": -0.4}, "dropout": {"test_score": -0.4}}, seq_len=100),
        ],
        ignore_index=True,
    )
    ctrl = [
        {
            "name": "gated_beat_rnn",
            "claim": "g",
            "point": {"task": "adding", "seq_len": 100, "cell": "lstm"},
            "source": "H&S 1997",
        },
        {"name": "dropout_overfit", "claim": "c", "point": {**AT, "seq_len": 100}, "source": "Zaremba et al. 2014"},
        {"name": "bn_lstm_sooner", "claim": "a", "point": {**AT, "seq_len": 100}, "source": "Cooijmans et al. 2016"},
    ]
    dsg = design.parse({"design": {"claims": {}, "controls": ctrl}})
    out = {c.control.name: c for c in controls.check(claims.run_claims(runs, cmp.Options(), design=dsg), dsg, 0.05)}
    assert out["gated_beat_rnn"].outcome == controls.PASS and out["gated_beat_rnn"].row["mean_diff"] > 0.4  # log ratio
    assert out["dropout_overfit"].outcome == controls.FAIL and out["dropout_overfit"].why.startswith("not testable")
    assert out["bn_lstm_sooner"].outcome == controls.FAIL and out["bn_lstm_sooner"].row is None


def test_a_malformed_design_names_the_key():
    with pytest.raises(ConfigError, match="design.claims.e.points"):
        design.parse({"design": {"claims": {"e": {"points": []}}}})
    with pytest.raises(ConfigError, match="design.claims.z"):
        design.parse({"design": {"claims": {"z": {"points": [AT]}}}})
    with pytest.raises(ConfigError, match="design.gate.learned_margin"):
        design.parse({"design": {"gate": {"learned_margin": -1}}})


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


def test_ratio_endpoints_stratify_by_averaging_the_points_log_ratios():
    """(a) declared at two lengths: the confirmatory row is the mean of the two log RMST ratios, with one
    Welch-Satterthwaite t over all four arms; its MDE is the noncentral t's at that standard error."""
    parts, logs = [], []
    for T, (fast, slow) in ((30, (200.0, 400.0)), (100, (300.0, 900.0))):
        spec = {
            "none": {"steps_to_target": lambda s, v=slow: v + 20 * (s % 5), "stop_at_target": True},
            "bn": {"steps_to_target": lambda s, v=fast: v + 20 * (s % 3), "stop_at_target": True},
        }
        parts.append(table(spec, seq_len=T, rng_seed=T))
        logs.append(
            math.log(np.mean([slow + 20 * (s % 5) for s in SEEDS]) / np.mean([fast + 20 * (s % 3) for s in SEEDS]))
        )
    dsg = a_design(a={"points": [{**AT, "seq_len": 30}, {**AT, "seq_len": 100}], "margin": 1.25})
    a = results(pd.concat(parts, ignore_index=True), dsg)["a"].primary
    assert a["mean_diff"] == pytest.approx(np.mean(logs)) and a["verdict"] == "helps"
    assert a["mde"] == pytest.approx(stats.mde(a["se"], a["df"], 0.05)) and a["margin"] == pytest.approx(math.log(1.25))
