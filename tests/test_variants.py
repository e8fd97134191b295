"""The variant registry (benchmark/arms/variants.py): one vocabulary for the step benchmarks, gpu_bench and bench_check.

Each entry's overrides must build what Hydra builds from the same command line; a variant
registered once must show up in the step benchmarks' ids and gpu_bench's plan unasked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.arms import build_arm
from benchmark.arms import variants as registry
from benchmark.core import confpath
from benchmark.core.config import Impl, register_configs, validate
from benchmark.models import CELLS, ModelSpec, build_model, get_cell, resolve_impl
from benchmark.perf import bench_check, gpu_bench

from helpers import ENV, PLUGIN, PLUGIN_SEARCHPATH, compose

ROOT = Path(__file__).resolve().parents[1]
register_configs()
FAKE = registry.Variant(
    "dropout.fake",
    ("reg=dropout", "reg.dropout.placement=variational", "reg.dropout.p=0.5"),
    ("custom",),
    "nobody 2026",
    "a test-only variant",
)
REGISTER_FAKE = (
    "from benchmark.arms import variants as r; "
    "r.register(r.Variant('dropout.fake', ('reg=dropout', 'reg.dropout.placement=variational', "
    "'reg.dropout.p=0.5'), ('custom',), 'nobody 2026', 'a test-only variant')); "
)


@pytest.fixture
def fake() -> registry.Variant:
    v = registry.register(FAKE)
    try:
        yield v
    finally:
        registry.unregister(v.name)


def test_registry_imports_no_torch():
    code = "import sys, benchmark.arms.variants as v; assert v.all_variants(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_reference_and_the_literature_variants_are_registered():
    names = registry.names()
    assert names[0] == registry.REFERENCE == "none"
    assert {
        "bn.recurrent",
        "bn.input",
        "bn.output",
        "dropout.output",
        "dropout.variational",
        "dropout.recurrent",
        "both",
    } <= set(names)
    for v in registry.all_variants():
        assert v.description, v.name
    no_paper = {v.name for v in registry.all_variants() if not v.paper}
    assert no_paper == {"none", "bn.output"}  # the baseline, and the tutorials' placement


@pytest.mark.parametrize("name", registry.names())
def test_overrides_build_what_hydra_builds_from_the_same_command_line(name):
    v = registry.get(name)
    cfg = compose(*v.overrides)
    validate(OmegaConf.to_object(cfg))
    assert registry.arm(v) == build_arm(OmegaConf.to_container(cfg.reg))


@pytest.mark.parametrize("name", registry.names())
def test_every_variant_runs_on_each_of_its_impls(name):
    v = registry.get(name)
    rc = registry.arm(v)
    for impl in v.impls:
        for cell in CELLS:
            assert resolve_impl(get_cell(cell), rc, Impl(impl)) is Impl(impl)  # native only where it can
            model = build_model(ModelSpec(get_cell(cell), 3, 8, 1, 2, reg=rc, impl=Impl(impl)))
            model(torch.randn(1, 4, 5, 3)).sum().backward()


def test_targets_name_an_impl_the_variant_runs_on():
    for v in registry.all_variants():
        for device, impl in v.targets:
            assert impl in v.impls, (v.name, device, impl)
    assert registry.get("bn.recurrent").target("custom", "cpu") == 3.0
    assert registry.get("dropout.output").target("native") == 1.3
    assert registry.get("bn.input").target("custom") is None


def test_bench_ids_parse_back_and_find_their_reference():
    plan = registry.bench_plan(["lstm", "my-cell"], [50, 200])
    ids = [p.id for p in plan]
    assert len(ids) == len(set(ids))
    assert ids[0] == "lstm-native-none-T50"  # each (cell, T) group starts with its reference
    for p in plan:
        back = registry.parse_bench_id(p.id)
        assert back == p
        assert registry.reference_id(p.id) == f"{p.cell}-native-none-T{p.seq_len}"
    assert "lstm-native-bn.output-T50" in ids and "lstm-custom-bn.output-T50" not in ids
    with pytest.raises(ValueError, match="'bn.sideways' is not registered"):
        registry.parse_bench_id("lstm-custom-bn.sideways-T50")
    with pytest.raises(ValueError, match="impl 'fused'"):
        registry.parse_bench_id("lstm-fused-none-T50")
    with pytest.raises(ValueError, match="expected <cell>-<impl>-<variant>-T<seq_len>"):
        registry.parse_bench_id("lstm-custom-none")


def test_bad_registrations_and_unknown_names_are_clear_errors(fake):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FAKE)
    with pytest.raises(ValueError, match="without '-'"):
        registry.register(registry.Variant("bn-x", ("reg=bn",), ("custom",), "", "x"))
    with pytest.raises(ValueError, match="must start with 'reg="):
        registry.register(registry.Variant("bn.x", ("reg.bn.placement=input",), ("custom",), "", "x"))
    with pytest.raises(ValueError, match="'reg.<key>=<value>'"):
        registry.register(registry.Variant("bn.x", ("reg=bn", "hidden_size=3"), ("custom",), "", "x"))
    with pytest.raises(ValueError, match="impls"):
        registry.register(registry.Variant("bn.x", ("reg=bn",), ("cudnn",), "", "x"))
    with pytest.raises(KeyError, match="unknown variant 'bn.x'; choose one of: none, .*dropout.fake"):
        registry.get("bn.x")
    assert "bn.x" not in registry.names()


def test_a_registered_variant_appears_in_the_gpu_bench_plan_and_runs(fake, tmp_path):
    names = [v.name for v in gpu_bench.variants([])]
    assert "custom-dropout.fake" in names
    out = tmp_path / "gpu.json"
    rc = gpu_bench.main(
        [
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
            "--repeats",
            "2",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--cells",
            "rnn",
            "--variants",
            "dropout.fake",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"native-none", "custom-dropout.fake"}
    assert rows["custom-dropout.fake"]["ratio_fwd_bwd"] > 0 and rows["custom-dropout.fake"]["verdict"] == "no target"
    assert gpu_bench.Variant(Impl.custom, fake).reg_config(None).dropout.p == 0.5  # its own override
    assert gpu_bench.Variant(Impl.custom, fake).reg_config(0.1).dropout.p == 0.1  # --dropout-p wins


def test_a_registered_variant_appears_in_the_step_benchmarks(tmp_path):
    """Register in the pytest process that collects tests/bench: its ids, then one timed round of it."""
    out = tmp_path / "bench.json"
    args = [
        "tests/bench/bench_step.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "--bench-seq-lens=7",
        "--bench-rounds=1",
        "--bench-warmup=0",
        "--bench-threads=1",
        "-k",
        "rnn and fake",
        f"--benchmark-json={out}",
    ]
    code = REGISTER_FAKE + f"import pytest, sys; sys.exit(pytest.main({args!r}))"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (b,) = json.loads(out.read_text())["benchmarks"]
    info = b["extra_info"]
    assert info["variant"] == "rnn-custom-dropout.fake-T7" and info["reference"] == "rnn-native-none-T7"
    assert info["variant_name"] == "dropout.fake" and info["dropout_placement"] == "variational"
    assert info["dropout_p"] == 0.5 and len(info["ratio_samples"]) == 1


def test_bench_check_takes_references_from_the_registry(fake):
    r = bench_check.Ratio(1.0, 1.0, 1.0, 3, median_ms=2.0, ref_ms=2.0)
    current = {"gru-native-none-T9": r, "gru-custom-dropout.fake-T9": r, "gru-custom-gone.away-T9": r}
    notes = bench_check.reference_notes({}, current)
    assert notes[0] == "reference gru-native-none-T9: 2.00 ms now, not in the baseline"
    assert notes[1] == "not in the variant registry (benchmark/arms/variants.py): gru-custom-gone.away-T9"
    assert len(notes) == 2


@pytest.fixture
def user_arms(monkeypatch) -> list[registry.Variant]:
    """The example study's arms (tests/plugin_example/conf/reg/) registered from its search path, then removed."""
    monkeypatch.syspath_prepend(str(PLUGIN))  # their modules, as PYTHONPATH gives them to a run
    found = registry.register_search_path(confpath.from_overrides([PLUGIN_SEARCHPATH]))
    try:
        yield found
    finally:
        for v in found:
            registry.unregister(v.name)


def test_a_users_arms_join_the_registry_from_a_search_path_in_their_own_words(user_arms, tmp_path):
    """Loaded as a run loads them (each YAML's `_target_`), described by their own classes; `noise` timed by
    gpu_bench given the search path after `--`."""
    from my_plugin import NoiseArm

    by_name = {v.name: v for v in user_arms}
    assert set(by_name) == {"noise", "spectral", "tar"} and set(by_name) <= set(registry.names())
    assert by_name["noise"].description == "Gaussian noise on hidden non-recurrent connections"
    assert by_name["spectral"].paper.startswith("Miyato et al. 2018")  # each arm's own paper
    assert isinstance(registry.arm(by_name["noise"]), NoiseArm)  # built from the user's reg/noise.yaml
    assert registry.search_variants(confpath.PACKAGE) == []  # the package's arms: registered at import
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--batch", "4", "--hidden", "8", "--input", "3", "--seq-lens", "5", "--repeats", "2"]
    args += ["--rounds", "1", "--warmup", "0", "--threads", "1", "--cells", "rnn", "--variants", "noise"]
    assert gpu_bench.main([*args, "--out", str(out), "--", PLUGIN_SEARCHPATH]) == 0
    rows = {r["variant"] for r in json.loads(out.read_text())["rows"]}
    assert rows == {"native-none", "native-noise", "custom-noise"}
