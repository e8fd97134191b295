"""`python -m benchmark.report`: one self-contained HTML file that leads with the verdicts, built
from synthetic sweeps with known effects (bn helps, dropout hurts, both no clear effect)."""
from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
import pytest

import benchmark as bm  # noqa: F401
from benchmark import aggregate, report
from synthetic_runs import make_run, make_sweep, parse_report

SECTIONS = ["1. Verdicts", "2. Accuracy vs sequence length", "3. Gradients", "4. Cost", "5. Learning curves",
            "6. Failed, diverged", "7. Environment"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("results")
    sweep = make_sweep(root, "syn", lens=(5, 10), seeds=(0, 1, 2))
    make_run(sweep, cell="gru", reg="bn", task="adding", seq_len=5, seed=7, status="diverged", test_accuracy=0.1)
    make_run(sweep, cell="rnn", reg="both", task="digits", seq_len=10, seed=8, status="failed",
             error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    killed = make_run(sweep, cell="lstm", reg="dropout", task="digits", seq_len=5, seed=9)
    (killed / "metrics.json").unlink()
    assert aggregate.main([str(sweep)]) == 0
    out = tmp_path_factory.mktemp("reports") / "syn"
    assert report.main([str(sweep), "--out", str(out), "--n-boot", "500"]) == 0
    return out / "index.html", (out / "index.html").read_text()


def test_sections_in_order_and_verdict_table_one_row_per_task_length_cell(built):
    _, html = built
    p = parse_report(html)
    assert len(p.h2) == 7 and all(h.startswith(s) for h, s in zip(p.h2, SECTIONS)), p.h2
    keys = [(r["task"], r["seq_len"], r["cell"]) for r in p.verdict_rows]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3  # tasks x lengths x cells
    assert {k[2] for k in keys} == {"rnn", "lstm", "gru"}
    assert p.verdict_headers == ["none", "bn", "dropout", "both"]  # every reg; none is the baseline column


def test_verdict_words_follow_from_the_known_effects(built):
    _, html = built
    for row in parse_report(html).verdict_rows:
        assert row["verdicts"] == {"bn": "helps", "dropout": "hurts", "both": "no clear effect"}, row


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
    assert "placement recurrent" in html and "Cooijmans" in html and "placement output, p=0.25" in html
    assert "auto→custom" in html and "auto→native" in html  # which impl each column ran on
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in html  # failed, with its error
    assert "diverged" in html and "incomplete" in html and "config.yaml but no metrics.json" in html
    assert "python -m benchmark.run --multirun +experiment=smoke" in html  # from hydra/multirun.yaml
    assert "Δmse" in html  # adding's own metric has its own verdict
    for t in ("verdicts", "accuracy-table", "gradient-table", "overhead-table", "cost-table", "generalisation-table",
              "failures-table", "env-table"):
        assert f'id="{t}"' in html


def test_same_bootstrap_seed_same_report_tables(tmp_path):
    sweep = make_sweep(tmp_path, "s", cells=("lstm",), tasks=("adding",), lens=(5,), seeds=(0, 1, 2))
    done = report.add_variants(aggregate.aggregate(sweep).summary)
    a = report.verdicts(done, n_boot=300, seed=1, level=0.95).acc
    b = report.verdicts(done, n_boot=300, seed=1, level=0.95).acc
    c = report.verdicts(done, n_boot=300, seed=2, level=0.95).acc
    pd.testing.assert_frame_equal(a, b)
    both = lambda t: t.loc[t["variant"] == "both", ["ci_low", "ci_high"]].to_numpy()  # noqa: E731
    assert (both(a) != both(c)).any()


def test_one_seed_says_too_few_seeds(tmp_path):
    sweep = make_sweep(tmp_path, "one", cells=("gru",), tasks=("digits",), lens=(4,), seeds=(0,))
    out = report.build(sweep, tmp_path / "rep", n_boot=100)
    rows = parse_report(out.read_text()).verdict_rows
    assert len(rows) == 1 and set(rows[0]["verdicts"].values()) == {"too few seeds"}


def test_cost_separates_regulariser_overhead_from_leaving_the_fused_kernel(tmp_path):
    # impl axis auto,custom: none runs natively (auto) and on the custom loop; custom is 2x native,
    # bn costs 1.5x none on the same impl (synthetic_runs.make_sweep)
    sweep = make_sweep(tmp_path, "c", cells=("lstm",), tasks=("adding",), lens=(5,), seeds=(0,),
                       impls=("auto", "custom"))
    done = report.add_variants(aggregate.aggregate(sweep).summary)
    _, over = report.cost_tables(done)
    row = lambda v, impl: over[(over["variant"] == v) & (over["impl_used"] == impl)].iloc[0]  # noqa: E731
    assert row("bn", "custom")["reg_overhead"] == pytest.approx(0.5)
    assert row("dropout", "native")["reg_overhead"] == pytest.approx(0.1)
    assert row("none", "custom")["kernel_cost"] == pytest.approx(1.0)
    assert row("bn", "custom")["total_vs_fused"] == pytest.approx(2.0)
    # verdicts use impl=auto only: one row per task x length x cell, seeds not double-counted
    v = report.verdicts(done, n_boot=100, seed=0, level=0.95)
    assert len(v.rows) == 1 and "impl=auto" in v.impl_note


def test_missing_results_folder_fails_loud_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "rep"
    assert report.main([str(tmp_path / "results" / "nope"), "--out", str(out)]) == 2
    assert "results/<sweep>/" in capsys.readouterr().err and not out.exists()


def test_every_run_failed_still_gives_a_report(tmp_path):
    sweep = tmp_path / "bad"
    for s in range(2):
        make_run(sweep, seed=s, status="failed", error=f"ValueError: broken {s}")
    html = report.build(sweep, tmp_path / "rep", n_boot=50).read_text()
    assert "ValueError: broken 0" in html and "ValueError: broken 1" in html
    assert parse_report(html).verdict_rows == []


def test_plots_draw_on_the_given_axes_with_one_colour_per_reg(tmp_path):
    from matplotlib.figure import Figure

    from benchmark import plots

    sweep = make_sweep(tmp_path, "p", cells=("lstm", "gru"), tasks=("adding",), lens=(5, 10), seeds=(0, 1))
    s = report.add_variants(aggregate.aggregate(sweep).summary)
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.vs_length(s, "test_accuracy", ax=ax, hue="variant") is fig  # draws where it is told
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"none", "bn", "dropout", "both"}
    full, part = plots.reg_palette(["both", "none", "bn", "dropout"]), plots.reg_palette(["dropout", "none"])
    assert part == {k: full[k] for k in part} and len(set(full.values())) == 4  # same colour in every figure
    g = plots.facet(s, plots.vs_length, y="test_accuracy", hue="variant")
    assert len(g.axes) == 2 and [a.get_title() for a in g.axes] == ["cell=lstm", "cell=gru"]
    assert plots.to_data_uri(g).startswith("data:image/png;base64,iVBOR")


def test_make_report_with_a_corrupt_run_builds_the_report_then_fails(tmp_path):
    """`make report`/`make sweep`: the corrupt folder is shown in the report, and the command still fails."""
    import subprocess
    import sys
    sweep = make_sweep(tmp_path / "results", "syn", lens=(5,), seeds=(0, 1))
    torn = make_run(sweep, cell="gru", reg="bn", task="adding", seq_len=5, seed=5)
    (torn / "metrics.json").write_text('{"complete": true, "status": "o')
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(["make", "report", "SWEEP=syn", f"RESULTS_DIR={tmp_path / 'results'}",
                        f"REPORTS_DIR={tmp_path / 'reports'}", f"VPY={sys.executable}"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert str(torn / "metrics.json") in p.stderr
    html = (tmp_path / "reports" / "syn" / "index.html").read_text()
    assert str(torn) in html
