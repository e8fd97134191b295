"""The training loop: library code over plain typed objects (no Hydra here).

One step: sample a batch (seeded generator, epoch permutations), forward (under bf16
autocast if asked), loss, backward, measure the global and per-group gradient norms
before clipping, clip, optimiser and scheduler step. The loss and every norm of a step
are read back in one device sync. A non-finite loss or gradient norm stops training at
that step (`status = "diverged"`) without applying the update; everything measured so
far is kept. Progress: a tqdm bar with loss and tokens/s, quiet when stderr is not a
terminal.

With precise BN (`precise_bn_batches > 0`), BN's population statistics are re-estimated
over a fixed set of training batches, weights frozen, before every evaluation and once
more at the end if the weights changed since (`benchmark.models.norm.estimate_population`),
so every evaluation, early-stopping snapshot and final metric sees statistics of the
weights it evaluates. Its cost is outside the training throughput, like evaluation's.
"""
from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from benchmark.accel import forward_backward
from benchmark.analysis import record
from benchmark.config import Accel, Optimizer, Precision, Scheduler, TrainConfig
from benchmark.precision import autocast, autocast_dtype
from benchmark.gradients import GROUPS, group_norm_tensors, total_norm
from benchmark.models.norm import estimate_population
from benchmark.tasks.base import Task, split_seed

HISTORY_COLUMNS = list(record.HISTORY_COLUMNS)  # the run record defines the columns once
EVAL_BATCH = 512  # evaluation batch; BN uses population statistics in eval, so size does not matter


@dataclass
class TrainResult:
    """What training produced; filled in as it goes, so a failure keeps the partial record."""

    status: str = "ok"  # ok | diverged (failed is decided by the caller)
    diverged_at_step: Optional[int] = None
    steps_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)  # global norm before clipping, per step
    clipped: list[bool] = field(default_factory=list)
    group_norms: dict[str, list[float]] = field(default_factory=lambda: {g: [] for g in GROUPS})
    train_time_s: float = 0.0  # time inside training steps only (no eval, no logging)
    tokens: int = 0
    best_val_accuracy: Optional[float] = None
    val_scores: list[float] = field(default_factory=list)  # validation score at each evaluation
    steps_to_target: Optional[int] = None
    stopped_early: bool = False  # by early stopping, or at the target (train.stop_at_target)
    stopped_at_target: bool = False
    evals_in_budget: int = 0  # evaluations the step budget holds (val_score_auc's length)
    capture_s: Optional[float] = None  # accel=graph: CUDA-graph capture time, outside train_time_s

    def summary(self) -> dict[str, Any]:
        """The gradient and throughput keys of metrics.json."""
        g = self.grad_norms

        def mean(xs: list[float]) -> Optional[float]:
            return statistics.fmean(xs) if xs else None

        out: dict[str, Any] = {
            "grad_norm_mean": mean(g), "grad_norm_max": max(g) if g else None,
            "grad_norm_std": statistics.pstdev(g) if g else None,
            "clipped_fraction": mean([float(c) for c in self.clipped]),
            "train_tokens_per_s": self.tokens / self.train_time_s if self.train_time_s > 0 else None,
            "best_val_score": max(self.val_scores) if self.val_scores else None,
            "val_score_auc": self.val_score_auc(),
        }
        for name in GROUPS:
            out[f"grad_norm_{name}"] = mean(self.group_norms[name])
        return out

    def val_score_auc(self) -> Optional[float]:
        """Area under the validation-score curve over the budget, per evaluation (higher = learnt sooner).

        A run that stopped at its target holds its last score for the evaluations it skipped:
        reaching the target sooner must not shorten (and so lower) its curve.
        """
        s = self.val_scores
        if not s:
            return None
        held = max(0, self.evals_in_budget - len(s)) if self.stopped_at_target else 0
        return (sum(s) + held * s[-1]) / (len(s) + held)


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer is Optimizer.adam:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer is Optimizer.adamw:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer is Optimizer.sgd:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr after `step` updates: linear warm-up, then cosine / step decay / constant.

    `step` decay divides by 10 at 1/2 and again at 3/4 of the budget.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler is Scheduler.cosine:
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    if cfg.scheduler is Scheduler.step:
        return 0.1 ** ((step >= cfg.steps // 2) + (step >= 3 * cfg.steps // 4))
    return 1.0


class BatchSampler:
    """Epoch-wise random permutations from a seeded CPU generator (same seed → same batches)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self) -> Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


def precise_batches(x: Tensor, batch_size: int, n: int, seed: int) -> list[Tensor]:
    """The n training batches (B, T, I) precise BN estimates over, fixed for the run.

    Drawn by a sampler of their own (seeded from the run's seed), so they never change the
    training batch order; full batches of the training batch size, as BN sees in training.
    """
    sampler = BatchSampler(len(x), min(batch_size, len(x)), split_seed("precise_bn", seed))
    return [x[sampler.next()] for _ in range(n)]


def refresh_population(model: nn.Module, batches: list[Tensor], device: torch.device,
                       dtype: Optional[torch.dtype] = None) -> None:
    """Precise BN over `batches` under the run's autocast (a no-op for a model without BN)."""
    with autocast(device.type, dtype):
        estimate_population(model, (b.to(device, non_blocking=True) for b in batches))


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, x: Tensor, y: Tensor, device: torch.device,
             dtype: Optional[torch.dtype] = None, max_batches: int = 0) -> dict[str, float]:
    """{'loss', 'accuracy', 'metric'} over (x, y) in eval mode (the first `max_batches` batches if > 0)."""
    if task.carries_state:  # a stream task (tasks/ptb.py): windows in order, the state carried from zeros
        return task.evaluate_stream(model, x, y, device, dtype, max_batches)
    was_training = model.training
    model.eval()
    outs, n = [], len(x) if max_batches <= 0 else min(len(x), max_batches * EVAL_BATCH)
    for i in range(0, n, EVAL_BATCH):
        with autocast(device.type, dtype):
            outs.append(model(x[i:i + EVAL_BATCH].to(device)).float().cpu())
    model.train(was_training)
    y_hat, y = torch.cat(outs), y[:n]
    return {"loss": task.loss(y_hat, y).item(), **task.evaluate(y_hat, y)}


def train(model: nn.Module, task: Task, cfg: TrainConfig, device: torch.device, seed: int,
          precision: Precision = Precision.fp32, progress: bool = True,
          result: Optional[TrainResult] = None, accel: Accel = Accel.none,
          precise_bn_batches: int = 0) -> TrainResult:
    """Train `model` (already on `device`) on task's train split; validate every eval_interval steps.

    Pass `result` to keep the partial record if this raises. With early stopping on, the
    model ends with the weights of its best validation score; with `stop_at_target`, training
    ends at the first evaluation whose validation score reaches `task.target_score`. `precise_bn_batches > 0`:
    precise BN over that many training batches before every evaluation and at the end
    (0: BN keeps the momentum average its training steps update).
    """
    res = result if result is not None else TrainResult()
    res.evals_in_budget = cfg.steps // cfg.eval_interval + (cfg.steps % cfg.eval_interval > 0)
    (x_tr, y_tr), (x_val, y_val) = task.splits()["train"], task.splits()["val"]
    params = [p for p in model.parameters() if p.requires_grad]
    groups = model.param_groups()
    opt = make_optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    sampler = BatchSampler(len(x_tr), min(cfg.batch_size, len(x_tr)), seed)
    dtype = autocast_dtype(precision)
    fwd_bwd = forward_backward(model, task.loss, accel, dtype)  # eager, or CUDA-graph replay (accel=graph)
    # A stream task (tasks/ptb.py) gives its own windows, in stream order, and a forward+backward that
    # carries the hidden state from one window to the next; it restarts from zeros after each evaluation.
    stream = task.train_stream(model, cfg.batch_size, device, dtype) if task.carries_state else None
    if stream is not None:
        fwd_bwd = stream
    tokens_per_step = (cfg.batch_size if stream is not None else min(cfg.batch_size, len(x_tr))) * task.total_len
    best_state, best_criterion, bad_evals = None, -math.inf, 0
    pop_batches = precise_batches(x_tr, cfg.batch_size, precise_bn_batches, seed) if precise_bn_batches else []
    refreshed_at = -1  # steps_done when population statistics were last re-estimated (-1: never)
    window: list[tuple[float, ...]] = []  # per-step stats since the last history row
    window_time = 0.0
    bar = tqdm(total=cfg.steps, disable=not (progress and sys.stderr.isatty()), file=sys.stderr,
               desc=f"{task.name} T={task.total_len}", leave=False)
    model.train()
    try:
        for step in range(1, cfg.steps + 1):
            t0 = time.perf_counter()
            if stream is not None:
                xb, yb = stream.next_batch()
            else:
                idx = sampler.next()
                xb, yb = x_tr[idx].to(device, non_blocking=True), y_tr[idx].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            captured = fwd_bwd.capture_s
            loss = fwd_bwd(xb, yb)  # forward (autocast if asked), loss, backward
            if fwd_bwd.capture_s > captured:  # accel=graph met a new shape: a capture is not throughput
                t0 += fwd_bwd.capture_s - captured
                res.capture_s = fwd_bwd.capture_s
            if cfg.max_norm is not None:
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_norm)
            else:
                gnorm = total_norm(params).to(loss.device)
            gn = group_norm_tensors(groups)
            present = [g for g in GROUPS if gn[g] is not None]
            stats = torch.stack([loss.detach().float(), gnorm.float()] + [gn[g].float() for g in present]).tolist()
            loss_v, gnorm_v = stats[0], stats[1]  # one sync per step
            if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
                res.status, res.diverged_at_step = "diverged", step
                break
            opt.step()
            sched.step()
            dt = time.perf_counter() - t0
            res.train_time_s += dt
            res.tokens += tokens_per_step
            res.steps_done = step
            clipped = cfg.max_norm is not None and gnorm_v > cfg.max_norm
            res.grad_norms.append(gnorm_v)
            res.clipped.append(clipped)
            group_v = dict(zip(present, stats[2:]))
            for g in present:
                res.group_norms[g].append(group_v[g])
            window.append((loss_v, gnorm_v, float(clipped), *(group_v.get(g, math.nan) for g in GROUPS)))
            window_time += dt

            is_eval = step % cfg.eval_interval == 0 or step == cfg.steps
            if step % cfg.log_interval == 0 or is_eval:
                cols = list(zip(*window))
                row: dict[str, Any] = {
                    "step": step, "train_loss": statistics.fmean(cols[0]), "grad_norm": statistics.fmean(cols[1]),
                    "clipped": statistics.fmean(cols[2]), "lr": opt.param_groups[0]["lr"],
                    "tokens_per_s": len(window) * tokens_per_step / window_time if window_time > 0 else None,
                }
                for k, g in enumerate(GROUPS):
                    v = [c for c in cols[3 + k] if not math.isnan(c)]
                    row[f"grad_norm_{g}"] = statistics.fmean(v) if v else None
                if is_eval:
                    if pop_batches:
                        refresh_population(model, pop_batches, device, dtype)
                        refreshed_at = step
                    val = evaluate(model, task, x_val, y_val, device, dtype, cfg.eval_batches)
                    if stream is not None:
                        stream.reset()  # evaluation's state never reaches training
                    val_score = task.score(val["metric"])
                    row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_metric=val["metric"],
                               val_score=val_score)
                    if val_score is not None and math.isfinite(val_score):
                        res.val_scores.append(val_score)
                    acc = val["accuracy"]
                    if res.steps_to_target is None and val_score is not None and val_score >= task.target_score:
                        res.steps_to_target = step
                    res.best_val_accuracy = acc if res.best_val_accuracy is None else max(acc, res.best_val_accuracy)
                    # early stopping follows the score (the task's metric, normalised), as selection does;
                    # accuracy only where a task defines no score
                    criterion = val_score if val_score is not None and math.isfinite(val_score) else acc
                    if criterion > best_criterion:
                        best_criterion, bad_evals = criterion, 0
                        if cfg.early_stopping_patience is not None:
                            best_state = copy.deepcopy(model.state_dict())
                    else:
                        bad_evals += 1
                res.history.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", tok_s=f"{row['tokens_per_s'] or 0:.3g}")
                window, window_time = [], 0.0
                if (is_eval and cfg.early_stopping_patience is not None
                        and bad_evals > cfg.early_stopping_patience):
                    res.stopped_early = True
                    break
                if is_eval and cfg.stop_at_target and res.steps_to_target == step and step < cfg.steps:
                    res.stopped_early = res.stopped_at_target = True  # time to target: the final model is this one
                    bar.update(1)
                    break
            bar.update(1)
    finally:
        bar.close()
    if best_state is not None and res.stopped_early and not res.stopped_at_target:
        model.load_state_dict(best_state)  # weights and the statistics estimated for them
    elif pop_batches and refreshed_at != res.steps_done:  # e.g. diverged between evaluations
        refresh_population(model, pop_batches, device, dtype)
    return res


def final_metrics(model: nn.Module, task: Task, device: torch.device,
                  precision: Precision = Precision.fp32) -> dict[str, Any]:
    """Test metrics, train metrics on the first n_test training examples (equal noise), and the
    final model's validation score (the learning-rate selection reads it; the test split selects nothing)."""
    s = task.splits()
    dtype = autocast_dtype(precision)
    test = evaluate(model, task, *s["test"], device, dtype)
    val = evaluate(model, task, *s["val"], device, dtype)
    n = len(s["test"][0])
    tr = evaluate(model, task, s["train"][0][:n], s["train"][1][:n], device, dtype)
    return {
        "test_accuracy": test["accuracy"], "test_metric": test["metric"], "test_loss": test["loss"],
        "test_score": task.score(test["metric"]),
        "train_accuracy": tr["accuracy"], "train_loss": tr["loss"], "train_metric": tr["metric"],
        "train_score": task.score(tr["metric"]), "val_score": task.score(val["metric"]),
        "generalization_gap": tr["accuracy"] - test["accuracy"],
    }
