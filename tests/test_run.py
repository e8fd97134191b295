"""`python -m benchmark.run`: the files one grid point writes, its statuses and exit codes,
re-runs that skip complete points, config errors that write nothing, and a user plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmark as bm  # noqa: F401
from benchmark.core import record
from benchmark.core.config import ConfigError
from benchmark.core.io import atomic_write_json, is_complete, run_id
from benchmark.job import execute as bm_execute
from benchmark.job.cohort_run import run_job
from benchmark.job.prepare import prepare

from helpers import PLUGIN, TINY, compose

ROOT = Path(__file__).resolve().parent.parent
# Keys the run record promises (benchmark/core/record.py, documented in docs/metrics.md).
CONTRACT_KEYS = set(record.KEYS)
ENV_KEYS = {
    "device_name",
    "torch",
    "cuda",
    "cudnn",
    "threads",
    "malloc_keep_freed",
    "git_rev",
    "hostname",
    "python",
    "platform",
    "start_time",
    "tf32",
    "precision",
}
VOLATILE = {
    "train_tokens_per_s",
    "fwd_ms",
    "fwd_bwd_ms",
    "fwd_ms_iqr",
    "fwd_bwd_ms_iqr",
    "fwd_tokens_per_s",
    "fwd_bwd_tokens_per_s",
    "peak_memory_mb",
    "env",
    "wall_s",
    "timing_load_avg",
    "timing_jobs_beside",
    "train_jobs_beside",
}


def composed(overrides: list[str], plugin: bool = False):
    return compose(*TINY, *overrides, plugin=plugin)


def run_inprocess(tmp_path: Path, overrides: list[str], plugin: bool = False) -> tuple[str, dict, Path]:
    p = prepare(composed([f"results_dir={tmp_path}"] + overrides, plugin))
    status = run_job([p], threads=1)[0]
    return status, json.loads((p.out / "metrics.json").read_text()), p.out


def cli(args: list[str], tmp_path: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(ROOT)])}
    flags = [a for a in args if a.startswith("--")]  # argparse: flags before the overrides
    over = [a for a in args if not a.startswith("--")]
    return subprocess.run(
        [sys.executable, "-m", "benchmark.run", *flags, *TINY, f"results_dir={tmp_path}", *over],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def runs(tmp_path: Path, sweep: str = "single") -> list[Path]:
    return sorted((tmp_path / sweep / "runs").glob("*")) if (tmp_path / sweep / "runs").exists() else []


def test_one_point_writes_the_documented_files(tmp_path):
    status, m, out = run_inprocess(tmp_path, ["cell=gru", "reg=both", "task=copy", "impl=custom", "seed=1"])
    assert status == "ok" and out.parent == tmp_path / "single" / "runs" and out.name == m["run_id"]
    assert {f.name for f in out.iterdir()} == {"config.yaml", "history.csv", "metrics.json"}
    assert set(m) == CONTRACT_KEYS and ENV_KEYS <= set(m["env"])  # exactly the record, nothing undocumented
    assert m["complete"] is True and m["cell"] == "gru" and m["reg"] == "both" and m["task"] == "copy"
    assert m["bn_placement"] == "recurrent" and m["dropout_placement"] == "output" and m["dropout_p"] == 0.25
    assert m["impl"] == "custom" and m["impl_used"] == "custom" and m["seq_len"] == 8
    T = 8 + 20
    assert len(m["hidden_grad_profile_start"]) == T and len(m["hidden_grad_profile_end"]) == T
    assert all(len(m[record.init_gain_key(g)]) == T for g in record.INIT_GAINS)  # a BN arm: the gain inits too
    assert m["generalization_gap"] == pytest.approx(m["train_accuracy"] - m["test_accuracy"])
    assert m["grad_norm_norm"] > 0 and m["fwd_bwd_ms"] > 0 and m["timing_method"] == "perf_counter"
    assert m["metric_baseline"] == pytest.approx(10 * __import__("math").log(8) / T)
    assert m["metric_perfect"] == 0.0 and m["metric_higher_is_better"] is False and m["lr"] == 0.001
    assert m["test_score"] == pytest.approx(1 - m["test_metric"] / m["metric_baseline"])  # copy: 1 - CE/baseline
    hist = __import__("pandas").read_csv(out / "history.csv")
    evals = hist.dropna(subset=["val_score"])
    assert len(evals) and m["val_score_auc"] == pytest.approx(evals["val_score"].mean())
    assert m["best_val_score"] == pytest.approx(evals["val_score"].max())
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header.startswith("step,train_loss,train_penalty,grad_norm,clipped,lr,tokens_per_s")


def test_rerun_after_a_kill_removes_the_temp_files_it_left(tmp_path):
    over = ["cell=rnn", "reg=none", "task=adding", "seed=4"]
    p = prepare(composed([f"results_dir={tmp_path}"] + over))
    p.out.mkdir(parents=True)
    (p.out / "config.yaml").write_text("from the killed attempt\n")
    (p.out / ".metrics.json.x1y2z3.tmp").write_text('{"complete": tr')  # killed mid-write
    assert run_job([p], threads=1)[0] == "ok"
    assert {f.name for f in p.out.iterdir()} == {"config.yaml", "history.csv", "metrics.json"}


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    over = ["cell=lstm", "reg=dropout", "task=adding", "seed=2", "force=true"]
    _, a, _ = run_inprocess(tmp_path / "a", over)
    torch.manual_seed(123)  # state left by anything else must not matter: each job resets it
    _, b, _ = run_inprocess(tmp_path / "b", over)
    assert a["run_id"] == b["run_id"]
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
    _, c, _ = run_inprocess(tmp_path / "c", ["cell=lstm", "reg=dropout", "task=adding", "seed=3"])
    assert c["run_id"] != a["run_id"] and c["test_metric"] != a["test_metric"]


def test_run_id_ignores_output_location_only():
    base = {"seed": 0, "results_dir": "a", "sweep": "x", "force": False, "train": {"lr": 1.0, "progress": True}}
    same = {**base, "results_dir": "b", "sweep": "y", "force": True, "train": {"lr": 1.0, "progress": False}}
    assert run_id(base) == run_id(same) and len(run_id(base)) == 12
    assert run_id(base) != run_id({**base, "seed": 1})


def test_a_later_knob_at_its_default_leaves_the_run_id_as_it_was_before_the_knob(compose):
    """Each knob of LATER_KNOBS is named with the default the schema (or its task's YAML) gives it: a config at
    that default hashes as the same config without the key; any other value is another run."""
    from omegaconf import OmegaConf

    from benchmark.core.io import LATER_KNOBS, _drop

    resolved = OmegaConf.to_container(compose("task=ptb"), resolve=True)
    for key, default in LATER_KNOBS.items():
        node = resolved
        for part in key.split("."):
            node = node[part]
        assert node == default, key
        assert run_id(resolved) == run_id(_drop(resolved, key)), key
    other = {**resolved, "init": {"scheme": "uniform", "scale": 0.1}}
    assert run_id(other) != run_id(resolved)
    other = {**resolved, "task": {**resolved["task"], "window_loss": "sum"}}
    assert run_id(other) != run_id(resolved)


def test_is_complete_only_for_ok_or_diverged(tmp_path):
    assert not is_complete(tmp_path)
    for status, want in (("ok", True), ("diverged", True), ("failed", False)):
        atomic_write_json(tmp_path / "metrics.json", {"complete": True, "status": status})
        assert is_complete(tmp_path) is want
    (tmp_path / "metrics.json").write_text('{"complete": tr')  # torn write from an older tool
    assert not is_complete(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "override,key",
    [
        ("task.seq_len=0", "task.seq_len"),
        ("impl=native reg=bn", "impl"),
        ("train.steps=0", "train.steps"),
        ("+task.n_tain=5", "task"),
        ("reg=bn train.batch_size=1", "train.batch_size"),
    ],
)
def test_config_errors_raise_before_anything_is_written(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        prepare(composed([f"results_dir={tmp_path}"] + override.split()))
    assert not any(tmp_path.iterdir())


def test_single_run_cli_exit_codes_and_statuses(tmp_path):
    ok = cli(["task=adding"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = cli(["task.seq_len=0"], tmp_path / "bad")
    assert bad.returncode != 0 and "task.seq_len" in bad.stderr and "Traceback" not in bad.stderr
    assert not runs(tmp_path / "bad")
    failed = cli([f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "task=failing"], tmp_path)
    assert failed.returncode == 1
    diverged = cli([f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "task=nanloss"], tmp_path)
    assert diverged.returncode == 0, diverged.stderr
    by_task = {
        json.loads((d / "metrics.json").read_text())["task"]: json.loads((d / "metrics.json").read_text())
        for d in runs(tmp_path)
    }
    assert by_task["adding"]["status"] == "ok"
    f = by_task["failing"]
    assert f["status"] == "failed" and f["complete"] is True and "boom" in f["error"]
    # the loss's first call is the start-of-run gradient probe, so the 4th call is training step 3
    assert "RuntimeError" in f["traceback"] and f["steps_done"] == 2
    d = by_task["nanloss"]
    assert d["status"] == "diverged" and d["diverged_at_step"] == 3 and d["steps_done"] == 2
    assert d["test_accuracy"] is not None and d["fwd_bwd_ms"] > 0  # nothing else lost


@pytest.mark.sweep  # a Hydra multirun in a subprocess: `make test-sweeps`
def test_multirun_continues_past_failures_and_resumes(tmp_path):
    args = ["--multirun", f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "task=sign,failing", "seed=0,1", "sweep=s"]
    first = cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    metrics = [json.loads((d / "metrics.json").read_text()) for d in runs(tmp_path, "s")]
    assert sorted(m["status"] for m in metrics) == ["failed", "failed", "ok", "ok"]
    mtimes = {d.name: (d / "metrics.json").stat().st_mtime_ns for d in runs(tmp_path, "s")}
    second = cli(args, tmp_path)
    assert second.returncode == 0, second.stderr
    log = second.stdout + second.stderr
    assert log.count("skipping complete run") == 2  # ok runs skipped, failed ones retried
    after = {d.name: (d / "metrics.json").stat().st_mtime_ns for d in runs(tmp_path, "s")}
    changed = {k for k in after if after[k] != mtimes[k]}
    ok_ids = {m["run_id"] for m in metrics if m["status"] == "ok"}
    assert changed == {m["run_id"] for m in metrics} - ok_ids
    forced = cli(args + ["force=true"], tmp_path)
    assert "skipping complete run" not in forced.stdout + forced.stderr


@pytest.mark.sweep  # a Hydra multirun in a subprocess: `make test-sweeps`
def test_multirun_config_error_fails_loud_and_writes_nothing(tmp_path):
    r = cli(["--multirun", "task.seq_len=0", "sweep=s"], tmp_path)
    assert r.returncode != 0 and "task.seq_len" in r.stderr
    assert not runs(tmp_path, "s")


def test_user_cell_and_task_from_outside_the_package(tmp_path):
    """The example of docs/extending.md: a module on PYTHONPATH plus configs on hydra.searchpath."""
    r = cli([f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "cell=leaky", "task=sign", "impl=auto"], tmp_path)
    assert r.returncode == 0, r.stderr
    (d,) = runs(tmp_path)
    m = json.loads((d / "metrics.json").read_text())
    assert m["complete"] and m["status"] == "ok" and m["cell"] == "leaky" and m["task"] == "sign"
    assert m["impl_used"] == "custom"  # no fused kernel for a user cell
    assert len(m["hidden_grad_profile_end"]) == 8


def test_plugin_task_declares_its_own_direction_and_score(tmp_path):
    """A metric called `nll` is lower-is-better because the task declares it, not because of its name."""
    r = cli([f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "cell=gru", "task=sign_nll"], tmp_path)
    assert r.returncode == 0, r.stderr
    (d,) = runs(tmp_path)
    m = json.loads((d / "metrics.json").read_text())
    assert m["metric_name"] == "nll" and m["metric_higher_is_better"] is False and m["metric_perfect"] == 0.0
    assert m["test_score"] == pytest.approx(1 - m["test_metric"] / __import__("math").log(2))


def test_a_failure_after_training_keeps_every_part_measured_before_it(tmp_path, monkeypatch):
    """The record is merged from the parts each phase returns: the phases before the error stay."""

    def broken(*a, **k):
        raise RuntimeError("timing broke")

    monkeypatch.setattr(bm_execute, "dedicated_timing", broken)
    status, m, out = run_inprocess(tmp_path, ["cell=gru", "task=adding", "seed=2"])
    assert status == "failed" and m["status"] == "failed" and "timing broke" in m["error"]
    assert m["steps_done"] == m["steps"] and m["test_accuracy"] is not None  # training and final metrics kept
    assert m["hidden_grad_profile_end"] and m["grad_norm_mean"] is not None and m["cell"] == "gru"
    assert m["fwd_bwd_ms"] is None and m["peak_memory_mb"] is None  # the phases from the error on: not measured
    assert len((out / "history.csv").read_text().splitlines()) > 1  # the history of the training that ran
