"""The step-time regression check (`benchmark.perf.bench_check`) on synthetic pytest-benchmark JSON.

Fixtures are written the way tests/bench writes them: per variant, per-round ratios to the
same-run reference in `extra_info["ratio_samples"]`. A slow test at the end runs the real
suite with a deliberately slowed variant and shows that the check goes red.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import variants as registry
from benchmark.perf.bench_check import (
    BenchFileError,
    Ratio,
    Verdict,
    compare,
    judge,
    load_baseline,
    load_run,
    main,
    ratio_from_samples,
)

from helpers import ENV

ROOT = Path(__file__).resolve().parents[1]
# variant -> true ratio to native/none of the same cell and T
RATIOS = {
    "lstm-native-none-T50": 1.0,
    "lstm-native-dropout.output-T50": 1.1,
    "lstm-custom-none-T50": 2.1,
    "lstm-custom-bn.recurrent-T50": 3.4,
    "gru-native-none-T50": 1.0,
    "gru-custom-none-T50": 1.1,
}


def bench_json(
    path: Path,
    ratios: dict[str, float],
    seed: int,
    noise: float = 0.03,
    rounds: int = 15,
    slowdown: dict[str, float] | None = None,
) -> Path:
    """A pytest-benchmark-shaped JSON whose per-round ratios scatter by ±noise (uniform) around `ratios`."""
    rng = random.Random(seed)
    slowdown = slowdown or {}
    benches = []
    for vid, r in ratios.items():
        f = slowdown.get(vid, 1.0)
        samples = [r * f * (1 + rng.uniform(-noise, noise)) for _ in range(rounds)]
        ref_ms = [10.0 * (1 + rng.uniform(-noise, noise)) for _ in range(rounds)]
        benches.append(
            {
                "name": f"test_train_step[{vid}]",
                "fullname": f"bench_step.py::test_train_step[{vid}]",
                "stats": {"median": 0.010 * r * f, "rounds": rounds},
                "extra_info": {"variant": vid, "ratio_samples": samples, "ref_ms": ref_ms, "slowdown": f},
            }
        )
    doc = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "torch": "2.13.0", "torch_threads": 2},
        "commit_info": {"id": "abc", "branch": "main", "dirty": False},
        "benchmarks": benches,
    }
    path.write_text(json.dumps(doc))
    return path


def check(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = main([str(a) for a in argv], console=Console(file=buf, width=200, color_system=None))
    return code, buf.getvalue()


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    run = bench_json(tmp_path / "base_run.json", RATIOS, seed=0)
    out = tmp_path / "baseline.json"
    assert check(run, "--baseline", out, "--write-baseline")[0] == 0
    return out


def verdicts(text: str) -> dict[str, str]:
    """variant -> verdict cell of the rendered table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 6 and cells[1].endswith("-T50"):
            rows[cells[1]] = cells[5]
    return rows


def test_unchanged_run_passes(tmp_path, baseline):
    code, out = check(bench_json(tmp_path / "cur.json", RATIOS, seed=1), "--baseline", baseline)
    assert code == 0, out
    assert set(verdicts(out).values()) == {"ok"}
    assert "PASS" in out
    for col in ("variant", "baseline ratio", "current ratio", "change", "verdict"):
        assert col in out


def test_synthetic_1_5x_slowdown_of_one_variant_fails(tmp_path, baseline):
    cur = bench_json(tmp_path / "cur.json", RATIOS, seed=1, slowdown={"lstm-custom-none-T50": 1.5})
    code, out = check(cur, "--baseline", baseline)
    assert code == 1, out
    v = verdicts(out)
    assert v.pop("lstm-custom-none-T50") == "REGRESSION"
    assert set(v.values()) == {"ok"}  # only the slowed one is flagged
    assert "Failing: lstm-custom-none-T50." in out
    assert "injected slowdowns" in out


def test_tolerance_is_configurable(tmp_path, baseline):
    cur = bench_json(tmp_path / "cur.json", RATIOS, seed=1, noise=0.01, slowdown={"gru-custom-none-T50": 1.2})
    assert check(cur, "--baseline", baseline)[0] == 0  # +20% < 25%
    code, out = check(cur, "--baseline", baseline, "--tolerance", "0.1")
    assert code == 1 and verdicts(out)["gru-custom-none-T50"] == "REGRESSION"


def test_variant_missing_from_current_is_reported_and_fails(tmp_path, baseline):
    fewer = {k: v for k, v in RATIOS.items() if k != "lstm-custom-bn.recurrent-T50"}
    code, out = check(bench_json(tmp_path / "cur.json", fewer, seed=1), "--baseline", baseline)
    assert code == 1
    assert verdicts(out)["lstm-custom-bn.recurrent-T50"] == "MISSING (not measured)"
    assert "Failing: lstm-custom-bn.recurrent-T50." in out
    code, out = check(bench_json(tmp_path / "cur.json", fewer, seed=1), "--baseline", baseline, "--allow-missing")
    assert code == 0 and "MISSING" in out  # still reported


def test_variant_missing_from_baseline_is_reported_as_new(tmp_path, baseline):
    more = dict(RATIOS, **{"rnn-custom-none-T50": 1.3})
    code, out = check(bench_json(tmp_path / "cur.json", more, seed=1), "--baseline", baseline)
    assert code == 0
    assert verdicts(out)["rnn-custom-none-T50"] == "NEW (no baseline)"
    assert "make bench-baseline" in out


def test_spread_guard_passes_past_threshold_when_spreads_overlap():
    base = ratio_from_samples([1.5, 2.0, 2.5, 3.0, 3.5])  # median 2.5, q1..q3 = 2..3
    assert judge(base, Ratio(3.3, 2.9, 3.8, 5), 0.25) is Verdict.slower_noisy  # +32% but q1 2.9 < 3.0
    assert judge(base, Ratio(3.3, 3.1, 3.8, 5), 0.25) is Verdict.regression
    assert judge(base, Ratio(1.5, 1.2, 1.9, 5), 0.25) is Verdict.faster
    assert judge(base, Ratio(2.6, 2.0, 3.0, 5), 0.25) is Verdict.ok


def test_compare_rows_and_tolerance_validation():
    a = {"x": Ratio(2.0, 1.9, 2.1, 9)}
    rows = compare(a, {"y": Ratio(1.0, 1.0, 1.0, 9)}, 0.25)
    assert [(r.variant, r.verdict) for r in rows] == [("x", Verdict.missing), ("y", Verdict.new)]
    assert rows[0].change is None
    with pytest.raises(ValueError, match="tolerance"):
        compare(a, a, 0)


def test_baseline_round_trip_and_machine_info(tmp_path, baseline):
    variants, meta = load_baseline(baseline)
    assert set(variants) == set(RATIOS)
    assert meta["machine"]["cpu"] == "Test CPU" and meta["machine"]["torch_threads"] == 2
    assert abs(variants["lstm-custom-bn.recurrent-T50"].ratio - 3.4) < 3.4 * 0.03
    current, _ = load_run(tmp_path / "base_run.json")
    assert variants["lstm-custom-none-T50"].ratio == pytest.approx(current["lstm-custom-none-T50"].ratio, abs=1e-4)


def test_refuses_to_write_baseline_from_slowed_run(tmp_path):
    run = bench_json(tmp_path / "run.json", RATIOS, seed=0, slowdown={"gru-custom-none-T50": 2.0})
    code, out = check(run, "--baseline", tmp_path / "b.json", "--write-baseline")
    assert code == 2 and "injected slowdowns" in out
    assert not (tmp_path / "b.json").exists()


def test_foreign_json_is_a_clear_error(tmp_path, baseline):
    p = tmp_path / "foreign.json"
    p.write_text(json.dumps({"benchmarks": [{"name": "test_x", "stats": {"median": 1.0}, "extra_info": {}}]}))
    with pytest.raises(BenchFileError, match="test_x.*ratio_samples"):
        load_run(p)
    code, out = check(p, "--baseline", baseline)
    assert code == 2 and "ratio_samples" in out
    code, out = check(bench_json(tmp_path / "c.json", RATIOS, seed=1), "--baseline", tmp_path / "nope.json")
    assert code == 2 and "--write-baseline" in out


def test_committed_baseline_covers_the_fast_subset():
    """Every variant of the CI baseline is still measured by the fast subset (T=50, one thread)."""
    variants, meta = load_baseline(ROOT / "benchmark" / "baselines" / "cpu.json")
    cells = ("rnn", "lstm", "gru")
    planned = {p.id for p in registry.bench_plan(cells, [50])}
    assert set(variants) <= planned, sorted(set(variants) - planned)  # a rename would make bench-check fail
    assert len(variants) >= len(cells) * 10
    assert meta["machine"]["torch_threads"] == 1
    for c in cells:
        assert variants[f"{c}-native-none-T50"].ratio == pytest.approx(1.0, abs=0.15)  # reference vs itself


@pytest.mark.slow
def test_real_slowdown_makes_check_fail(tmp_path):
    """End to end: the real suite (lstm, T=50), then the same with lstm-custom-none slowed 1.5× -> exit 1."""

    def bench(out: Path, *extra: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/bench/bench_step.py",
            "-q",
            "-k",
            "lstm",
            "--bench-seq-lens=50",
            "--bench-rounds=10",
            "--bench-threads=1",
            f"--benchmark-json={out}",
            *extra,
        ]
        subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=600)

    bench(tmp_path / "base.json")
    assert check(tmp_path / "base.json", "--baseline", tmp_path / "baseline.json", "--write-baseline")[0] == 0
    bench(tmp_path / "slow.json", "--bench-slowdown=lstm-custom-none:1.5")
    code, out = check(tmp_path / "slow.json", "--baseline", tmp_path / "baseline.json")
    assert code == 1, out
    v = {line.split("│")[1].strip(): line.split("│")[5].strip() for line in out.splitlines() if line.count("│") >= 6}
    assert v["lstm-custom-none-T50"] == "REGRESSION"
    assert sum(x == "REGRESSION" for x in v.values()) == 1, out


def test_confirmation_run_a_regression_must_show_in_every_run(tmp_path, baseline):
    slow = {"lstm-custom-none-T50": 1.5}
    fluke = bench_json(tmp_path / "a.json", RATIOS, seed=1, slowdown=slow)
    clean = bench_json(tmp_path / "b.json", RATIOS, seed=2)
    again = bench_json(tmp_path / "c.json", RATIOS, seed=3, slowdown=slow)
    code, out = check(fluke, clean, "--baseline", baseline)
    assert code == 0 and "lowest of 2 runs" in out
    code, out = check(fluke, again, "--baseline", baseline)
    assert code == 1 and verdicts(out)["lstm-custom-none-T50"] == "REGRESSION"
    code, out = check(fluke, clean, "--baseline", tmp_path / "new.json", "--write-baseline")
    assert code == 2 and "exactly one run" in out


def test_a_failed_baseline_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    run = bench_json(tmp_path / "run.json", RATIOS, seed=0)
    out = tmp_path / "baselines" / "cpu.json"
    out.parent.mkdir()
    out.write_text("old baseline\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr("benchmark.core.io.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        check(run, "--baseline", out, "--write-baseline")
    assert out.read_text() == "old baseline\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cpu.json"]
