"""One job: the members of `cohort.members` (or the one run of a solo job), each recorded as its run alone would be.

The cohort sweeper (benchmark/sweep/cohort_sweep.py) launches one job per variant with the points of its
cohort axes (seeds, learning rates, dropout p) as members; `benchmark.run.main` prepares every member
(`benchmark.job.prepare.prepare_job`) and calls `run_job`. Complete members are skipped (as runs alone
are), so a re-run after a kill trains only the missing ones. The others go through the one executor,
`benchmark.job.execute.execute`,

- **stacked**: all together, one stack of E members (a batched GEMM per step for every member, which
  `make bench-cohort` measures faster per member than a stack of one for every variant but one);
- **sequential**: one after another, each a stack of one, where that is faster: torch's fused LSTM on the
  CPU, or cuDNN on a GPU unless the stack is replayed as a CUDA graph (`fused_is_faster`); where members
  cannot share one stack (a stream task carries each model's state, accel=compile speeds up one model's
  loop); or with `cohort.mode=sequential`.

Either way each member writes its own run folder under its run id, with `cohort_id`, `cohort_size` and
`cohort_mode` in its record.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any, Optional, Sequence

from benchmark.core.config import Accel, CohortMode, ConfigError
from benchmark.job.execute import SOLO, execute, skip_complete
from benchmark.job.prepare import Prepared
from benchmark.models.model import resolve_impl
from benchmark.models.stack import stackable_specs
from benchmark.perf import costs as measured

log = logging.getLogger(__name__)


def cohort_keys(ps: Sequence[Prepared], mode: str) -> dict[str, Any]:
    """The record's cohort keys of runs trained together in one job."""
    if len(ps) == 1:
        return SOLO
    cid = hashlib.sha256(",".join(sorted(p.run_id for p in ps)).encode()).hexdigest()[:12]
    return {"cohort_id": cid, "cohort_size": len(ps), "cohort_mode": mode}


def why_not_stacked(ps: Sequence[Prepared]) -> Optional[str]:
    """Why these members cannot train as one stack (None: they can): accel=compile, a stream task, or members that
    differ in a setting one stack shares (a cohort axis such as reg.bn.eps; output dropout's p is not)."""
    p = ps[0]
    if p.cfg.accel is Accel.compile:
        return "accel=compile speeds up one model's loop"
    if p.task.carries_state:
        return "a stream task carries each model's state from one window to the next"
    if not stackable_specs([q.spec for q in ps]):
        return (
            "the members differ in a setting one stack shares (only settings their arm's `stack_key` leaves out, "
            "such as output dropout's p, may differ)"
        )
    return None


def choose_mode(ps: Sequence[Prepared]) -> CohortMode:
    """Stacked, unless the variant has no cohort form or its members alone are measured faster (`stack_loses`)."""
    p, asked = ps[0], ps[0].cfg.cohort.mode
    if len(ps) == 1 or asked is CohortMode.sequential:
        return CohortMode.sequential
    reason = why_not_stacked(ps)
    if asked is CohortMode.stacked:
        if reason:
            raise ConfigError("cohort.mode", "stacked", f"auto or sequential for reg={p.spec.reg.name}", reason)
        return CohortMode.stacked
    reason = reason or fused_is_faster(p, len(ps))
    if reason:
        log.info("cohort of %d runs one after another: %s", len(ps), reason)
        return CohortMode.sequential
    return CohortMode.stacked


def stack_loses(
    cell: str,
    impl_used: str,
    device: str,
    hidden: int,
    members: int,
    accel: str = "none",
    reg: str = "none",
    T: int = 100,
) -> bool:
    """Whether members alone beat the stack, as measured (`make bench-cohort`, `benchmark.perf.gpu_cohort`,
    docs/timing.md). Only members torch's fused kernels run can win alone: the custom loop (BN, ...) loses to
    any stack, by 5-70x. On the CPU only torch's fused LSTM wins: against the fused cohort LSTM
    (models/fused_plain.py) the stack wins there only at H=32 with E >= 10 (per-member ratio 0.85-0.90 at
    E=10), not at E=5 (0.97-1.21) nor at H=128 (0.95-1.10 at E=10); torch's RNN and GRU kernels lose to the
    stack there (ratios 0.2-0.6). On a GPU the stack replayed as a CUDA graph always wins; the eager stack
    against cuDNN depends on T and E (`cuda_eager_stack_loses`)."""
    if impl_used != "native":
        return False
    if device == "cuda":
        return accel != "graph" and cuda_eager_stack_loses(cell, reg, T, members)
    return cell == "lstm" and device == "cpu" and not (hidden <= 32 and members >= 10)


@functools.cache
def _cuda_eager_costs() -> measured.Costs:
    return measured.load(128, 64, accel="none")


def cuda_eager_stack_loses(cell: str, reg: str, T: int, members: int) -> bool:
    """On a GPU an eager stacked step is launch-bound: it costs about the same for 1 or 20 members (H200,
    `make bench-cohort`), and grows with T, while one cuDNN member's step barely does. So the stack wins from
    a break-even member count that grows with T: measured at E=15, H=128, B=64 (benchmark/baselines/
    gpu_cohort_h200.json) it is 6-16 members at T=100 and 25-37 at T=1000. An arm the file lacks runs
    cuDNN as `none` does."""
    costs = _cuda_eager_costs()
    arm = reg if costs.has(cell, reg) else "none"
    return costs.at(cell, arm, T, "step_ms") > members * costs.at(cell, arm, T, "solo_ms")


def fused_is_faster(p: Prepared, members: int) -> Optional[str]:
    """The reason to run this variant's members one after another, if the measurements give one."""
    impl = resolve_impl(p.spec.cell, p.spec.reg, p.cfg.impl).value
    spec = p.spec
    args = (spec.cell.name, impl, p.device.type, spec.hidden_size, members, p.cfg.accel.value, spec.reg.name)
    if stack_loses(*args, T=spec.total_len or 1):
        kernel = "cuDNN" if p.device.type == "cuda" else "torch's fused LSTM"
        return f"{kernel} is faster per member than an eager stacked loop on {p.device.type} (accel=graph stacks)"
    return None


def run_job(ps: Sequence[Prepared], threads: Optional[int], multirun: bool = False, job_num: int = 0) -> list[str]:
    """Run a job's members (one for a solo job): stacked in one call of the executor, or one after another, each a
    stack of one; their statuses ("skipped" for complete ones)."""
    pending = [p for p in ps if not skip_complete(p)]
    statuses = ["skipped"] * (len(ps) - len(pending))
    if not pending:
        return statuses
    mode = choose_mode(pending)
    keys = cohort_keys(pending, mode.value)
    if mode is CohortMode.sequential:
        return statuses + [s for p in pending for s in execute([p], threads, multirun, job_num, keys)]
    return statuses + execute(pending, threads, multirun, job_num, keys)
