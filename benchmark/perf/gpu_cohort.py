"""What a cohort's training step costs on a GPU: `python -m benchmark.perf.gpu_cohort` (`make bench-cohort-gpu`).

The sweep's wall time on a GPU is its cohort jobs' training steps plus their evaluations, so the
wall-time estimates of `conf/experiment/full.yaml` and the GPU default (`benchmark.perf.estimate`)
are built from what this measures, per cell × arm × T at one cohort size and shape:

- `step_ms`: one training step of the whole cohort exactly as `benchmark.training.loop` runs it
  (members' batches, stacked forward + losses + backward, one-pass step statistics, each member's
  optimiser and schedule), eager (`accel=none`) and as a CUDA-graph replay (`accel=graph`);
  median over the timed steps after the warm-up steps (the capture is `capture_s`, apart);
- `solo_ms`: one step of a member alone through its own model (torch's fused cuDNN kernel where
  the arm allows it): the cost of training the members one after another instead;
- `eval_ms`: one evaluation of every member at once (precise BN where the arm has BN, then
  validation; `benchmark.training.evaluate`), as the cohort runs it every `eval_interval` steps.

Training steps never evaluate here (the budget is far beyond the timed steps). Rows are measured
in the order given and written after each one, so a run cut short by `--deadline-s` keeps what
it measured. float32 with TF32 off, as `precision=fp32` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import torch

from benchmark.arms import load_arm
from benchmark.core.config import Accel, Precision, TrainConfig
from benchmark.core.io import atomic_write_json
from benchmark.job import envinfo
from benchmark.models import ModelSpec, build_model, get_cell, masks
from benchmark.tasks import get_task
from benchmark.tasks.base import Task
from benchmark.training.evaluate import refresh_members, validate_members
from benchmark.training.loop import Member, StackStep, restack, step_alone, step_members
from benchmark.training.precision import set_tf32, sync
from benchmark.training.train import TrainResult

SKIP_NO_CUDA = "skipped: no CUDA device (torch.cuda.is_available() is False)"


def make_task(seq_len: int, batch: int) -> Task:
    """The adding problem at T (input 2, one output): data cheap to draw at any length."""
    return get_task("adding", seq_len=seq_len, n_train=8 * batch, n_val=4 * batch, n_test=4 * batch)


def members(cell: str, arm: str, task: Task, hidden: int, n: int, batch: int, device: torch.device) -> list[Member]:
    """n members of one variant as a cohort job builds them: seeds 0..n-1, learning rates 1e-3 and 3e-3 alternating."""
    spec = ModelSpec(
        get_cell(cell),
        task.input_size,
        hidden,
        1,
        task.output_size,
        per_step=task.per_step,
        reg=load_arm(arm),
        total_len=task.total_len,
    )
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = build_model(spec).to(device).train()
        model.mask_gens = [masks.generator(seed, device)]
        cfg = TrainConfig(
            steps=100_000,
            batch_size=batch,
            lr=(1e-3, 3e-3)[seed % 2],
            eval_interval=100_000,
            log_interval=100_000,
            progress=False,
            max_norm=1.0,
        )
        out.append(
            Member(
                model,
                task.train_batches(batch, seed, device),
                task.train_step(model),
                task=task,
                cfg=cfg,
                device=device,
                seed=seed,
                dtype=None,
                result=TrainResult(),
                precise_bn_batches=spec.reg.precise_batches(),
            )
        )
    return out


def timed(fn, n: int, device: torch.device) -> list[float]:
    """Milliseconds of n synchronised calls."""
    out = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def measure(cell: str, arm: str, seq_len: int, accel: Accel, a: argparse.Namespace, device: torch.device) -> dict:
    """One row: the cohort's step (and, with --solo/--eval, a member alone and one evaluation)."""
    task = make_task(seq_len, a.batch)
    ms = members(cell, arm, task, a.hidden, a.members, a.batch, device)
    stacked = restack(None, [], ms)
    step = StackStep(stacked, ms, None, graph=accel is Accel.graph)
    i = iter(range(1, 10**9))
    calls = timed(lambda: step_members(step, ms, next(i)), a.warmup + a.repeats, device)[a.warmup :]
    row: dict[str, Any] = dict(
        cell=cell,
        arm=arm,
        seq_len=seq_len,
        accel=accel.value,
        members=a.members,
        hidden=a.hidden,
        batch=a.batch,
        step_ms=statistics.median(calls),
        step_ms_samples=[round(c, 3) for c in calls],
        capture_s=step.capture_s,
        solo_impl=ms[0].model.impl_used.value,
    )
    if a.solo and accel is Accel.none:
        solo = members(cell, arm, task, a.hidden, 1, a.batch, device)[0]
        j = iter(range(1, 10**9))
        s = timed(lambda: step_alone(solo, next(j)), a.warmup + a.repeats, device)[a.warmup :]
        row["solo_ms"] = statistics.median(s)
    if a.eval and accel is Accel.graph:
        k = iter(range(1, 10**9))

        def evaluate() -> None:
            n = next(k)
            refresh_members(ms, n)
            validate_members(ms, n)

        row["eval_ms"] = statistics.median(timed(evaluate, 2, device))
    return row


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench/gpu_cohort.json")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    ap.add_argument("--arms", nargs="+", default=["none", "bn", "dropout", "both"])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[100, 1000])
    ap.add_argument(
        "--accels", nargs="+", default=["graph"], choices=[a.value for a in Accel if a is not Accel.compile]
    )
    ap.add_argument("--members", type=int, default=15)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--solo", action="store_true", help="also time one member alone (accel=none rows)")
    ap.add_argument("--eval", action="store_true", help="also time one stacked evaluation (accel=graph rows)")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no new row after this many seconds")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_NO_CUDA)
        return 0
    if a.device == "cpu" and "graph" in a.accels:
        ap.error("--accels graph needs --device cuda (CUDA-graph capture)")
    device, t0 = torch.device(a.device), time.perf_counter()
    set_tf32(Precision.fp32)
    doc: dict[str, Any] = {"env": envinfo.collect(device, "fp32", envinfo.now_iso()), "rows": []}
    if a.append and Path(a.out).exists():
        doc["rows"] = json.loads(Path(a.out).read_text())["rows"]
    for T in a.seq_lens:
        for cell in a.cells:
            for arm in a.arms:
                for accel in map(Accel, a.accels):
                    if a.deadline_s is not None and time.perf_counter() - t0 > a.deadline_s:
                        print(f"deadline: stopped before {cell}-{arm} T={T} {accel.value}")
                        atomic_write_json(a.out, doc)
                        return 0
                    try:
                        row = measure(cell, arm, T, accel, a, device)
                    except Exception as e:  # recorded in the row and printed: the other rows go on
                        row = dict(
                            cell=cell,
                            arm=arm,
                            seq_len=T,
                            accel=accel.value,
                            error=repr(e),
                            traceback=traceback.format_exc(),
                        )
                        print(row["traceback"])
                    doc["rows"].append(row)
                    atomic_write_json(a.out, doc)
                    extra = "".join(f" {k}={row[k]:.2f}" for k in ("solo_ms", "eval_ms", "capture_s") if k in row)
                    step = f"{row['step_ms']:9.2f} ms/step" if "step_ms" in row else "FAILED " + row["error"][:80]
                    print(f"{cell:5}{arm:8}T={T:<5}E={a.members:<3}{accel.value:6}{step}{extra}", flush=True)
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
