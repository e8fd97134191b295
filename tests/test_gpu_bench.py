"""benchmark.perf.gpu_bench: the ratio table and JSON on CPU; a clean skip where CUDA is asked for and absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import variants as registry
from benchmark.perf import gpu_bench

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--device",
    "cpu",
    "--batch",
    "4",
    "--hidden",
    "8",
    "--input",
    "3",
    "--seq-lens",
    "5",
    "7",
    "--repeats",
    "4",
    "--rounds",
    "2",
    "--warmup",
    "1",
    "--threads",
    "1",
]
# Every registered variant on each of its impls (benchmark/arms/variants.py), reference included.
VARIANTS = {f"{impl}-{v.name}" for v in registry.all_variants() for impl in v.impls}


def test_cpu_table_and_json_hold_every_variant_with_ratios(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_bench.main(TINY + ["--cells", "lstm", "gru", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for word in ("ratio fwd+bwd", "target", "verdict", "tok/s fwd+bwd", *VARIANTS):
        assert word in printed, word
    data = json.loads(out.read_text())
    assert data["timing_method"] == "perf_counter"
    assert data["targets"] == {"custom-none": 2.0, "custom-bn.recurrent": 3.0, "custom-dropout.variational": 2.5}
    assert data["env"]["gpu_clocks"] is None and data["env"]["gpu_clocks_error"]  # null and the reason
    for key in ("torch", "cuda", "cudnn", "tf32_matmul", "tf32_cudnn", "precision", "device_name"):
        assert key in data["env"], key
    rows = data["rows"]
    assert {(r["cell"], r["seq_len"]) for r in rows} == {(c, t) for c in ("lstm", "gru") for t in (5, 7)}
    for cell in ("lstm", "gru"):
        for T in (5, 7):
            group = {r["variant"]: r for r in rows if r["cell"] == cell and r["seq_len"] == T}
            assert set(group) == VARIANTS
            ref = group["native-none"]
            assert ref["ratio_fwd_bwd"] == 1.0 and ref["verdict"] == "reference" and ref["target"] is None
            for name, r in group.items():
                assert r["error"] is None and r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0, name
                assert len(r["samples_fwd"]) == 4 and len(r["samples_fwd_bwd"]) == 4  # 2 rounds x 2 calls
                assert r["ratio_fwd_bwd"] == pytest.approx(r["fwd_bwd_ms"] / ref["fwd_bwd_ms"])
                assert r["fwd_bwd_tokens_per_s"] == pytest.approx(4 * T / r["fwd_bwd_ms"] * 1e3)
                assert r["setup_s"] is not None and r["setup_s"] >= 0
                if name != "native-none":
                    assert r["target"] == data["targets"].get(f"{r['impl']}-{r['reg']}")
                    expected = (
                        "no target"
                        if r["target"] is None
                        else "ok"
                        if r["ratio_fwd_bwd"] <= r["target"]
                        else "over target"
                    )
                    assert r["verdict"] == expected
    custom = {v.name for v in registry.all_variants() if "custom" in v.impls}
    assert {(s["cell"], s["seq_len"], s["variant"]) for s in data["summary"]} == {
        (c, t, name) for c in ("lstm", "gru") for t in (5, 7) for name in custom
    }


def test_summary_picks_the_fastest_custom_variant():
    def mk(v, reg, ratio):
        return gpu_bench.Row(
            "lstm",
            10,
            v,
            "custom",
            reg,
            "x",
            ratio_fwd_bwd=ratio,  # noqa: E731
            target=2.0,
            verdict="ok" if ratio <= 2 else "over target",
        )

    rows = [
        mk("custom-none", "none", 3.0),
        mk("custom-none+compile", "none", 1.5),
        gpu_bench.Row("lstm", 10, "native-none", "native", "none", "none", ratio_fwd_bwd=1.0),
    ]
    (s,) = gpu_bench.summarize(rows)
    assert s["best_variant"] == "custom-none+compile" and s["ratio_fwd_bwd"] == 1.5 and s["verdict"] == "ok"


def test_variants_add_each_speed_up_to_every_custom_regulariser():
    from benchmark.core.config import Accel

    names = [v.name for v in gpu_bench.variants([Accel.compile, Accel.graph])]
    n_custom = sum("custom" in v.impls for v in registry.all_variants())
    assert names[0] == "native-none" and len(names) == len(VARIANTS) + 2 * n_custom
    assert len(set(names)) == len(names)
    assert "custom-bn.recurrent+graph" in names and "custom-dropout.variational+compile" in names
    assert not any(n.startswith("native-") and "+" in n for n in names)  # speed-ups are for the custom loop
    some = [v.name for v in gpu_bench.variants([], ["bn.output", "both"])]
    assert some == ["native-none", "native-bn.output", "custom-both"]


def test_graph_on_cpu_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        gpu_bench.parse_args(["--device", "cpu", "--accel", "graph"])
    assert e.value.code == 2 and "--accel graph needs --device cuda" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip where CUDA is absent")
def test_cuda_requested_without_cuda_skips_cleanly_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "benchmark.perf.gpu_bench", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == gpu_bench.SKIP_NO_CUDA
    assert not out.exists()


@pytest.mark.slow
def test_cpu_bench_with_the_compiled_step(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu_bench.main(TINY + ["--cells", "rnn", "--seq-lens", "5", "--accel", "compile", "--out", str(out)]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == VARIANTS | {v + "+compile" for v in VARIANTS if v.startswith("custom-")}
    for name in ("custom-none+compile", "custom-bn.recurrent+compile"):
        assert rows[name]["error"] is None and rows[name]["ratio_fwd_bwd"] > 0
        assert rows[name]["setup_s"] > rows["custom-none"]["setup_s"]  # compile time, apart from throughput


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bench_runs_every_variant(tmp_path):  # pragma: no cover - GPU machines only
    out = tmp_path / "gpu.json"
    rc = gpu_bench.main(
        [
            "--batch",
            "8",
            "--hidden",
            "16",
            "--input",
            "4",
            "--seq-lens",
            "6",
            "--repeats",
            "4",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--cells",
            "lstm",
            "--out",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    assert rc == 0, [r["error"] for r in data["rows"] if r["error"]]
    assert data["timing_method"] == "cuda_events" and data["env"]["device"] == "cuda"
    assert {r["accel"] for r in data["rows"]} == {"none", "compile", "graph"}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "gpu.json"
    out.write_text("previous run\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr("benchmark.core.io.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        gpu_bench.main(TINY + ["--cells", "rnn", "--seq-lens", "5", "--variants", "none", "--out", str(out)])
    assert out.read_text() == "previous run\n"
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]
