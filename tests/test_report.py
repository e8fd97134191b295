"""`python -m benchmark.analysis.report`: one self-contained HTML file that leads with the claims and
verdicts, with its tables as CSV, Markdown and LaTeX, built from synthetic sweeps with known
effects (bn helps, dropout hurts, both none: inconclusive, as 6 seeds cannot show equivalence)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark.analysis import aggregate, comparisons, report, tables

from synthetic_runs import make_run, make_sweep, parse_report

pytestmark = pytest.mark.xdist_group("report")  # `make test`: one worker builds `built` (a report: seconds)
SECTIONS = [
    "1. Claims",
    "2. Verdicts",
    "3. Learning rates",
    "4. Scores vs sequence length",
    "5. Gradients",
    "6. Cost",
    "7. Learning curves",
    "8. Failed, diverged",
    "9. Environment",
]
VARIANTS = ["none", "bn.recurrent", "dropout.output", "both.recurrent+output"]
COLUMNS = {
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
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("results")
    sweep = make_sweep(root, "syn", lens=(5, 10))
    make_run(sweep, cell="gru", reg="bn", task="adding", seq_len=5, seed=7, status="diverged", test_score=0.1)
    make_run(
        sweep,
        cell="rnn",
        reg="both",
        task="digits",
        seq_len=10,
        seed=8,
        status="failed",
        error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    killed = make_run(sweep, cell="lstm", reg="dropout", task="digits", seq_len=5, seed=9)
    (killed / "metrics.json").unlink()
    assert aggregate.main([str(sweep)]) == 0
    out = tmp_path_factory.mktemp("reports") / "syn"
    assert report.main([str(sweep), "--out", str(out), "--n-boot", "500"]) == 0
    return out / "index.html", (out / "index.html").read_text()


def test_tables_beside_the_report_in_three_formats(built):
    path, _ = built
    v = pd.read_csv(path.parent / "verdicts.csv")
    assert COLUMNS <= set(v.columns) and len(v) == 2 * 2 * 3 * 3  # tasks x lengths x cells x treatments
    c = pd.read_csv(path.parent / "claims.csv")
    assert COLUMNS | {"claim", "baseline", "role", "mde", "p_equivalent"} <= set(c.columns)
    assert set(c["claim"]) == {"a", "b", "c", "d", "e", "g", "h"}  # (f) needs a rate grid
    assert c.loc[c["claim"] == "a", "verdict"].str.contains("not trained to a target").all()
    for name in ("verdicts", "claims"):
        md = (path.parent / f"{name}.md").read_text()
        assert md.startswith("| ") and "| verdict" in md.splitlines()[0].replace("  ", " ")
        tex = (path.parent / f"{name}.tex").read_text()  # shaped for a paper, booktabs rules: not the CSV's columns
        assert all(r in tex for r in ("\\toprule", "\\midrule", "\\bottomrule")) and "p\\_adjusted" not in tex
    tex = (path.parent / "verdicts.tex").read_text()
    assert "\\begin{tabular}{lllll}" in tex and "task & cell & variant & T=5 & T=10 \\\\" in tex
    rows = [r for r in tex.splitlines() if r.endswith("\\\\") and "[" in r]
    assert len(rows) == 2 * 3 * 4  # tasks x cells x variants; each length a column of "mean [low, high]"
    lstm_bn = [r for r in rows if "& bn.recurrent &" in r][1]  # adding, lstm
    assert lstm_bn.count("[") == 2 and lstm_bn.split("&")[3].strip().startswith("0.")
    claims_tex = (path.parent / "claims.tex").read_text()
    assert "claim & where & comparison & endpoint & effect [CI] & p (Holm) & word" in claims_tex


def test_the_paper_table_is_the_mean_and_its_t_interval_per_cell_variant_and_length():
    from scipy import stats as ss

    from benchmark.analysis import export

    runs = pd.DataFrame(
        {
            "task": "adding",
            "seq_len": [5, 5, 5, 10, 10, 5],
            "cell": ["lstm"] * 5 + ["gru"],
            "variant": ["none"] * 5 + ["bn.recurrent"],
            "test_score": [0.5, 0.6, 0.7, 0.4, float("nan"), 0.9],
        }
    )
    t = export.score_table(runs, 0.95)
    assert list(t.columns) == ["task", "cell", "variant", "T=5", "T=10"]
    half = ss.t.ppf(0.975, 2) * 0.1 / 3**0.5
    assert t.loc[0, "T=5"] == f"0.600 [{0.6 - half:.3f}, {0.6 + half:.3f}]"
    assert t.loc[0, "T=10"] == "0.400" and t.loc[1, "T=10"] == ""  # one seed: no interval; no run: empty
    assert list(t["task"]) == ["adding", ""] and list(t["cell"]) == ["lstm", "gru"]  # repeats blanked


def test_claims_lead_and_say_what_the_known_effects_say(built):
    path, html = built
    assert html.index('id="claims-glance"') < html.index('id="instrument-check"') < html.index('id="verdicts-section"')
    assert "Exploratory:</b> this sweep declares no design" in html  # no plan/design.json
    c = pd.read_csv(path.parent / "claims.csv")
    assert set(c["role"]) == {"point", "secondary"}  # no confirmatory test without a design
    word = lambda claim, ep: set(c[(c["claim"] == claim) & (c["endpoint"] == ep)]["verdict"])  # noqa: E731
    b = c[(c["claim"] == "b") & (c["role"] == "point")]  # the synthetic runs predate the filled init probe
    assert b["verdict"].str.startswith("not testable: no probe at initialisation").all()
    assert word("e", "test_score") == {"helps"}  # bn: + test score
    assert word("e", "score_gap") == {"descriptive"}
    assert word("c", "test_score") == {"hurts"}  # dropout's smaller gap comes with a lower test score: no support
    assert c.loc[c["claim"] == "c", "note"].isna().all()  # (c) tests the held-out score alone, its gap descriptive
    d = c[(c["claim"] == "d") & (c["role"] == "point")]
    assert d["note"].str.startswith("intersection-union: the row is the component test_score").all()
    assert set(d["baseline"]) == {"bn.recurrent & dropout.output"}
    assert c.loc[c["claim"] == "h", "verdict"].str.startswith("not testable at this budget: needs n ≈").all()
    assert "at initialisation with every BN gain set to γ" in html  # (b): the profiles at each gain init
    a = html[html.index('id="claim-a"') : html.index('id="claim-b"')]  # not testable: no run trained to a target
    assert "Not tested at" not in a
    cells = ("rnn", "lstm", "gru")
    points = [f"{t} T={T} {x}</td>" for t in ("adding", "digits") for T in (5, 10) for x in cells]
    assert all(a.count(p) == 1 for p in points), a  # each point one row, its word "not testable: ..."
    assert a.count("not testable: ") == len(points)


def test_a_declared_design_gets_one_row_per_claim_and_a_failed_control_goes_first(tmp_path):
    import json

    sweep = make_sweep(tmp_path, "dsg", cells=("lstm", "gru"), lens=(5,), tasks=("adding",), seeds=range(8))
    where = {"task": "adding", "seq_len": 5, "cell": "lstm"}
    doc = {
        "experiment": "claims_cpu",
        "hash": "0123456789ab",
        "tuning_seeds": [1000, 1001],
        "confirmation_seeds": list(range(8)),
        "design": {
            "gate": {"learned_margin": 0.05},
            "claims": {
                "e": {"points": [where, {**where, "cell": "gru"}], "margin": 0.02},
                "h": {"needs": "claims_gpu", "why": "needs n ≈ 90 seeds per arm"},
            },
            "controls": [
                {"name": "bn_helps", "claim": "e", "point": where, "source": "synthetic"},
                {"name": "dropout_overfit", "claim": "c", "point": where, "source": "Zaremba et al. 2014"},
            ],
        },
    }
    (sweep / "plan").mkdir()
    (sweep / "plan" / "design.json").write_text(json.dumps(doc))
    out = tmp_path / "report"
    assert report.main([str(sweep), "--out", str(out), "--n-boot", "200"]) == 0
    html = (out / "index.html").read_text()
    assert html.index('id="instrument-alarm"') < html.index('id="claims-glance"')  # the failed control first
    assert "<code>dropout_overfit</code>" in html and "0123456789ab" in html and "8 confirmation seeds" in html
    glance = html[html.index('id="claims-glance"') : html.index('id="instrument-check"')]
    assert glance.count("<tr>") == 1 + 8  # one row per claim
    assert "needs the GPU regime (claims_gpu): needs n ≈ 90 seeds per arm" in glance
    c = pd.read_csv(out / "claims.csv")
    e = c[(c["claim"] == "e") & (c["role"] == "primary")]
    assert len(e) == 1 and e["points"].iloc[0] == "adding T=5 lstm; adding T=5 gru" and e["verdict"].iloc[0] == "helps"
    assert (c["role"] == "primary").sum() == 1  # only (e) is declared with points


def test_sections_in_order_and_verdict_table_one_row_per_task_length_cell(built):
    _, html = built
    p = parse_report(html)
    assert len(p.h2) == 9 and all(h.startswith(s) for h, s in zip(p.h2, SECTIONS)), p.h2
    keys = [(r["task"], r["seq_len"], r["cell"]) for r in p.verdict_rows]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3  # tasks x lengths x cells
    assert {k[2] for k in keys} == {"rnn", "lstm", "gru"}
    assert p.verdict_headers == VARIANTS  # every variant; none is the baseline column


def test_verdict_words_follow_from_the_known_effects(built):
    _, html = built
    for row in parse_report(html).verdict_rows:
        assert row["verdicts"] == dict(zip(VARIANTS[1:], ["helps", "hurts", "inconclusive"])), row


def test_self_contained_figures_and_no_network(built):
    _, html = built
    p = parse_report(html)
    assert p.external == [] and p.scripts == 0
    assert len(p.imgs) >= 2 * 5  # per task: accuracy, metric/grad norm, profile, cost, curves
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_variants_failures_and_reproduction_are_stated(built):
    _, html = built
    # what each variant is comes from the variant registry (benchmark/arms/variants.py), with its paper
    from markupsafe import escape

    from benchmark.arms import variants

    for name in ("bn.recurrent", "dropout.output"):
        assert escape(variants.get(name).description) in html and escape(variants.get(name).paper) in html
    assert "dropout p=0.25" in html
    assert "auto→custom" in html and "auto→native" in html  # which impl each column ran on
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in html  # failed, with its error
    assert "diverged" in html and "incomplete" in html and "config.yaml but no metrics.json" in html
    assert "python -m benchmark.run --multirun +experiment=smoke" in html  # from hydra/multirun.yaml
    assert "test mse (lower is better, as the task declares)" in html  # the direction comes from the run record
    for t in (
        "verdicts",
        "aggregates",
        "score-table",
        "accuracy-table",
        "gradient-table",
        "overhead-table",
        "cost-table",
        "generalisation-table",
        "failures-table",
        "env-table",
    ):
        assert f'id="{t}"' in html


def test_same_seed_same_aggregate_intervals(tmp_path):
    sweep = make_sweep(tmp_path, "s", cells=("lstm",), tasks=("adding", "digits"), lens=(5,))
    sel = comparisons.select(comparisons.add_variants(aggregate.aggregate(sweep).summary))
    a = comparisons.aggregates(sel, comparisons.Options(seed=1, n_boot=300))
    pd.testing.assert_frame_equal(a, comparisons.aggregates(sel, comparisons.Options(seed=1, n_boot=300)))
    c = comparisons.aggregates(sel, comparisons.Options(seed=2, n_boot=300))
    assert (a["iqm_diff_low"] != c["iqm_diff_low"]).any()
    assert list(a["verdict"]) == ["too few tasks"] * 3  # 2 tasks: no general word
    many = pd.concat([sel.assign(task=f"{t}{i}") for i in range(3) for t in ("adding", "digits")], ignore_index=True)
    assert list(comparisons.aggregates(many, comparisons.Options(seed=1, n_boot=300))["verdict"]) == [
        "helps",
        "hurts",
        "inconclusive",
    ]  # 6 tasks: words where both intervals clear


def test_two_seeds_print_no_verdict_words(tmp_path):
    sweep = make_sweep(tmp_path, "two", cells=("gru",), tasks=("digits",), lens=(4, 8), seeds=(0, 1))
    out = report.build(sweep, tmp_path / "rep")
    rows = parse_report(out.read_text()).verdict_rows
    assert len(rows) == 2 and {w for r in rows for w in r["verdicts"].values()} == {"too few seeds"}
    for name in ("verdicts", "claims", "aggregates"):
        words = set(pd.read_csv(out.parent / f"{name}.csv")["verdict"])
        assert words and not words & {"helps", "hurts"}, (name, words)
    html = out.read_text()
    assert html.count('class="verdict v-helps"') == 1 and html.count('class="verdict v-hurts"') == 1  # the legend
    claims = pd.read_csv(out.parent / "claims.csv")
    assert claims["verdict"].str.startswith(("not testable", "too few seeds", "descriptive")).all()


def test_cost_separates_regulariser_overhead_from_leaving_the_fused_kernel(tmp_path):
    # impl axis auto,custom: none runs natively (auto) and on the custom loop; custom is 2x native,
    # bn costs 1.5x none on the same impl (synthetic_runs.make_sweep)
    sweep = make_sweep(
        tmp_path,
        "c",
        cells=("lstm",),
        tasks=("adding",),
        lens=(5,),
        seeds=(0,),
        impls=("auto", "custom"),
        regs=("none", "bn", "dropout"),
    )
    s = report.load_sweep(sweep)
    _, over = tables.cost_tables(s.done)
    row = lambda v, impl: over[(over["variant"] == v) & (over["impl_used"] == impl)].iloc[0]  # noqa: E731
    assert row("bn.recurrent", "custom")["reg_overhead"] == pytest.approx(0.5)
    assert row("dropout.output", "native")["reg_overhead"] == pytest.approx(0.1)
    assert row("none", "custom")["kernel_cost"] == pytest.approx(1.0)
    assert row("bn.recurrent", "custom")["total_vs_fused"] == pytest.approx(2.0)
    # comparisons use impl=auto only: one run per seed, seeds not double-counted
    assert s.impl == "auto" and len(s.selected) == 3 and set(s.selected["impl"]) == {"auto"}


def test_missing_results_folder_fails_loud_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "rep"
    assert report.main([str(tmp_path / "results" / "nope"), "--out", str(out)]) == 2
    assert "results/<sweep>/" in capsys.readouterr().err and not out.exists()


def test_every_run_failed_still_gives_a_report(tmp_path):
    sweep = tmp_path / "bad"
    for s in range(2):
        make_run(sweep, seed=s, status="failed", error=f"ValueError: broken {s}")
    html = report.build(sweep, tmp_path / "rep").read_text()
    assert "ValueError: broken 0" in html and "ValueError: broken 1" in html
    assert parse_report(html).verdict_rows == []


def test_the_report_writes_only_into_its_own_folder(tmp_path):
    """Without aggregated tables the report aggregates in memory; the results folder is left as it was."""
    sweep = tmp_path / "results" / "ro"
    for s in range(2):
        make_run(sweep, seed=s)
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*")}
    html = report.build(sweep, tmp_path / "rep").read_text()
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*")} == before
    assert "2 run folders in" in html
    assert sorted(p.name for p in (tmp_path / "rep").iterdir() if p.suffix == ".html") == ["index.html"]


def test_plots_draw_on_the_given_axes_with_one_colour_per_reg(tmp_path):
    from matplotlib.figure import Figure

    from benchmark.analysis import plots

    sweep = make_sweep(tmp_path, "p", cells=("lstm", "gru"), tasks=("adding",), lens=(5, 10), seeds=(0, 1))
    s = comparisons.add_variants(aggregate.aggregate(sweep).summary)
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.vs_length(s, "test_accuracy", ax=ax, hue="variant") is fig  # draws where it is told
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(VARIANTS)
    full, part = plots.reg_palette(VARIANTS), plots.reg_palette(["dropout.output", "none"])
    assert part == {k: full[k] for k in part} and len(set(full.values())) == 4  # same colour in every figure
    g = plots.facet(s, plots.vs_length, y="test_accuracy", hue="variant")
    assert len(g.axes) == 2 and [a.get_title() for a in g.axes] == ["cell=lstm", "cell=gru"]
    assert plots.to_data_uri(g).startswith("data:image/png;base64,iVBOR")


def test_equal_lines_stay_visible_and_large_throughputs_keep_their_label():
    """`none` was hidden under `dropout` where both score alike; the tokens/s label was clipped by 6-digit ticks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmark.analysis import plots

    d = pd.DataFrame(
        {
            "cell": "lstm",
            "seq_len": [6, 10] * 4,
            "variant": ["none"] * 4 + ["dropout.output"] * 4,
            "score": [0.5, 0.6] * 4,  # equal means and bands
            "tokens": [190000.0, 220000.0] * 4,
        }
    )
    fig = plots.facet(d, plots.vs_length, y="score", hue="variant")
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 2]
    xs = {ln.get_marker(): tuple(ln.get_xdata()) for ln in lines}
    assert len(xs) == 2 and len(set(xs.values())) == 2  # own marker, own x: neither hides the other
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["6", "10"]  # ticks at the true lengths
    fig = plots.facet(d, plots.vs_length, y="tokens", hue="variant", sharey=False, ylabel="tokens/s")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.get_yticklabels()[1].get_text().endswith(" k")
    assert ax.yaxis.label.get_window_extent().x0 >= 0  # inside the figure


def test_the_environment_lists_where_runs_ran_and_the_command_reproduces_the_sweep(tmp_path):
    """Each cohort's wall time was listed as an 'environment' value (20 of them), and the reproduce line carried
    the invocation's temporary skip-marks folder."""
    import json

    import yaml

    sweep = make_sweep(tmp_path, "env", cells=("gru",), regs=("none", "bn"), tasks=("adding",), lens=(5,), seeds=(0, 1))
    for i, m in enumerate(sorted(sweep.glob("runs/*/metrics.json"))):
        r = json.loads(m.read_text())
        r["env"] |= {"cohort_wall_s": 1.5 + i, "hostname": f"node{i}"}
        m.write_text(json.dumps(r))
    mr = yaml.safe_load((sweep / "hydra" / "multirun.yaml").read_text())
    mr["hydra"]["overrides"]["task"] += [f"skip_marks={tmp_path}/env/.skipped-1796650074-553", "force=0"]
    (sweep / "hydra" / "multirun.yaml").write_text(yaml.safe_dump(mr))
    html = report.build(sweep, tmp_path / "rep").read_text()
    env = html[html.index('id="env-table"') :]
    env = env[: env.index("</table>")]
    assert "env_cohort_wall_s" not in env and "env_hostname" in env and "node0 (1 runs)" in env
    command = report.reproduce(sweep)["command"]
    assert command.startswith("python -m benchmark.run --multirun +experiment=smoke results_dir=")
    assert "skip_marks" not in command and "force" not in command
    many = pd.Series([f"v{i % 11}" for i in range(22)])
    assert report.env_values(many).endswith("; and 3 other values (6 runs)")


@pytest.mark.parametrize("damage", ["failed", "corrupt", "deleted"])
def test_one_run_of_a_two_seed_pair_lost_still_gives_the_whole_report(tmp_path, damage, capsys):
    """A 2-seed sweep with one run of a pair failed, torn or deleted crashed every report: the across-task
    bootstrap met a stratum of one run (scipy refuses it). Now its interval is empty and the rest stands."""
    import json

    sweep = make_sweep(
        tmp_path / "results", "pair", cells=("gru",), regs=("none", "bn"), tasks=("adding", "digits"), seeds=(0, 1)
    )
    victim = next(
        f for f in sorted((sweep / "runs").iterdir()) if json.loads((f / "metrics.json").read_text())["reg"] == "bn"
    )
    if damage == "failed":
        m = json.loads((victim / "metrics.json").read_text())
        (victim / "metrics.json").write_text(
            json.dumps({**m, "status": "failed", "error": "RuntimeError: x", "test_score": None})
        )
    elif damage == "corrupt":
        (victim / "metrics.json").write_text('{"complete": true, "sta')
    else:
        shutil.rmtree(victim)
    rc = report.main([str(sweep), "--aggregate", "--out", str(tmp_path / "rep"), "--n-boot", "200"])
    assert rc == (1 if damage == "corrupt" else 0)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert len(parse_report(html).h2) == 9 and (damage == "deleted" or str(victim) in html)
    agg = pd.read_csv(tmp_path / "rep" / "aggregates.csv").set_index("variant")
    assert agg.loc["bn.recurrent", "iqm_diff"] == agg.loc["bn.recurrent", "iqm_diff"]  # a number, its interval NaN
    assert pd.isna(agg.loc["bn.recurrent", "iqm_diff_low"]) and capsys.readouterr().out.rstrip().endswith("index.html")


def test_make_report_with_a_corrupt_run_builds_the_report_then_fails(tmp_path):
    """`make report`/`make sweep`: the corrupt folder is shown in the report, and the command still fails."""
    import subprocess
    import sys

    sweep = make_sweep(
        tmp_path / "results", "syn", cells=("gru",), regs=("none", "bn"), tasks=("adding",), lens=(5,), seeds=(0, 1)
    )  # small: the point is the Makefile's exit status, not the report
    torn = make_run(sweep, cell="gru", reg="bn", task="adding", seq_len=5, seed=5)
    (torn / "metrics.json").write_text('{"complete": true, "status": "o')
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [
            "make",
            "report",
            "SWEEP=syn",
            f"RESULTS_DIR={tmp_path / 'results'}",
            f"REPORTS_DIR={tmp_path / 'reports'}",
            f"VPY={sys.executable}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0
    assert str(torn / "metrics.json") in p.stderr
    html = (tmp_path / "reports" / "syn" / "index.html").read_text()
    assert str(torn) in html


def test_learning_rate_grid_shows_the_selection_and_the_sensitivity_panel(tmp_path):
    sweep = make_sweep(tmp_path, "lrs", cells=("lstm",), tasks=("adding",), lens=(5,), seeds=(0, 1), lrs=(0.01, 0.03))
    html = report.build(sweep, tmp_path / "rep").read_text()
    assert 'id="lr-table"' in html and "The sweep tried learning rates 0.01, 0.03" in html
    assert "validation score (selects) vs learning rate" in html and "test score (never selects)" in html
    one = make_sweep(tmp_path, "one_lr", cells=("lstm",), tasks=("adding",), lens=(5,), seeds=(0, 1))
    assert "One learning rate in this sweep (0.01)" in report.build(one, tmp_path / "rep1").read_text()


def test_published_values_stand_beside_the_measured(tmp_path):
    """An experiment's `literature:` block (conf/experiment/literature.yaml) becomes a table in the report."""
    import yaml

    sweep = tmp_path / "lit"
    for reg, score in (("none", 0.4), ("bn", 0.8)):
        for seed in range(3):
            make_run(sweep, reg=reg, seed=seed, test_score=score, test_accuracy=0.5 + score / 2 + seed / 100)
    block = {
        "source": "Somebody et al. 2016, Table 1",
        "metric": "test_accuracy",
        "values": [
            {"task": "adding", "seq_len": 10, "cell": "lstm", "reg": "bn", "value": 0.93},
            {"task": "adding", "seq_len": 10, "cell": "gru", "reg": "none", "value": 0.5},
        ],
    }
    for cfg in sweep.glob("runs/*/config.yaml"):
        cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "literature": block}))
    html = report.build(sweep, tmp_path / "out").read_text()
    table = html[html.index('id="literature-table"') :]
    table = table[: table.index("</table>")]
    assert "Somebody et al. 2016, Table 1" in html
    assert "0.93" in table and "0.9100 ± 0.0100" in table  # bn: 0.90, 0.91, 0.92 over three seeds
    assert "no finished run" in table  # gru was not run: said, not dropped
    plain = report.build(make_sweep(tmp_path, "plain", seeds=(0, 1)), tmp_path / "plain").read_text()
    assert 'id="literature-table"' not in plain
