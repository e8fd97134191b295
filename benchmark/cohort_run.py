"""One job of a cohort: the members of `cohort.members`, each recorded as its solo run would be.

The cohort sweeper (benchmark/sweeper.py) launches one job per variant with the points of its
cohort axes (seeds, learning rates) as members; `benchmark.run.main` prepares every member and
calls `run_job`. Complete members are skipped (as solo runs are), so a re-run after a kill
trains only the missing ones. The others train

- **stacked** (`benchmark.train_cohort`): one model with a leading member dimension: a batched
  GEMM per step for every member, which `make bench-cohort` measures faster per member than
  the solo model for every variant but one;
- **sequential**: one after another through `benchmark.run.execute`, where that one is: torch's
  fused LSTM on the CPU (`fused_is_faster`); where the variant has no cohort form (a token
  embedding, output BN, a stream task, a user arm's module); or with `cohort.mode=sequential`.

Either way each member writes its own run folder under its solo run id, with `cohort_id`,
`cohort_size` and `cohort_mode` in its record. A stacked cohort's dedicated timing (`fwd_ms`,
...) is measured once, on the first member's model, and recorded for each member as the
variant's timing; `train_tokens_per_s` is the member's share of the cohort's throughput and
`wall_s` its share of the job's wall time (`env.cohort_wall_s` the whole).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Optional, Sequence

import torch

from benchmark.config import Accel, CohortMode, ConfigError
from benchmark.models.cohort import CohortModel
from benchmark.models.model import resolve_impl
from benchmark.run import (
    Prepared,
    run_model,
)

log = logging.getLogger("benchmark.cohort_run")


def cohort_keys(ps: Sequence[Prepared], mode: str) -> dict[str, Any]:
    """The record's cohort keys of runs trained together in one job."""
    if len(ps) == 1:
        return {"cohort_id": None, "cohort_size": 1, "cohort_mode": "solo"}
    cid = hashlib.sha256(",".join(sorted(p.run_id for p in ps)).encode()).hexdigest()[:12]
    return {"cohort_id": cid, "cohort_size": len(ps), "cohort_mode": mode}


def why_not_stacked(p: Prepared) -> Optional[str]:
    """Why this variant cannot train stacked (None: it can)."""
    if p.cfg.accel is not Accel.none:
        return f"accel={p.cfg.accel.value} speeds up one model's loop"
    if p.task.carries_state:
        return "a stream task carries each model's state from one window to the next"
    try:
        CohortModel([run_model(p, torch.device("cpu"))])
    except NotImplementedError as e:
        return str(e)
    return None


def choose_mode(ps: Sequence[Prepared]) -> CohortMode:
    """Stacked where the variant needs the custom loop and has a cohort form; sequential otherwise."""
    p, asked = ps[0], ps[0].cfg.cohort.mode
    if len(ps) == 1 or asked is CohortMode.sequential:
        return CohortMode.sequential
    reason = why_not_stacked(p)
    if asked is CohortMode.stacked:
        if reason:
            raise ConfigError("cohort.mode", "stacked", f"auto or sequential for reg={p.spec.reg.name}", reason)
        return CohortMode.stacked
    reason = reason or fused_is_faster(p)
    if reason:
        log.info("cohort of %d runs one after another: %s", len(ps), reason)
        return CohortMode.sequential
    return CohortMode.stacked


def stack_loses(cell: str, impl_used: str, device: str) -> bool:
    """Whether members alone beat the stack, as measured (`make bench-cohort`, docs/timing.md): only with
    torch's fused LSTM on the CPU. With the fused cohort LSTM (models/cohort_fused.py) the stack wins there
    only at H=32 with E >= 10 (per-member ratio 0.85-0.90 at E=10), not at E=5 (0.97-1.21) nor at H=128
    (0.95-1.10 at E=10). torch's RNN and GRU kernels lose to the stack there (ratios 0.2-0.6), and on a
    GPU the stack costs about what one member does."""
    return cell == "lstm" and impl_used == "native" and device == "cpu"


def fused_is_faster(p: Prepared) -> Optional[str]:
    """The reason to run this variant's members one after another, if the measurements give one."""
    impl = resolve_impl(p.spec.cell, p.spec.reg, p.cfg.impl).value
    if stack_loses(p.spec.cell.name, impl, p.device.type):
        return "torch's fused LSTM is faster per member than a stacked loop on the CPU"
    return None
