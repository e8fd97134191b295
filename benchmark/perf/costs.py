"""The measured costs of a cohort's step on a GPU and their interpolation in T.

`benchmark.perf.gpu_cohort` measures them; benchmark/baselines/gpu_cohort_h200.json holds them (an H200).
Two readers: a job choosing whether its members train stacked or one after another on a GPU
(`benchmark.job.cohort_run.cuda_eager_stack_loses`), and a sweep's time estimate (`benchmark.perf.estimate`).
So this module reads one JSON file with numpy only: a training job imports neither pandas nor the analysis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.config import ConfigError

BASELINE = Path(__file__).resolve().parents[1] / "baselines" / "gpu_cohort_h200.json"


class Costs:
    """Measured costs (`benchmark.perf.gpu_cohort` rows of one `accel`, whole jobs) and their interpolation in T."""

    def __init__(self, doc: dict[str, Any], hidden: int, batch: int, accel: str = "graph") -> None:
        rows = [r for r in doc["rows"] if r.get("accel") == accel and "step_ms" in r]
        shapes = {(r["hidden"], r["batch"]) for r in rows}
        self.shape = min(shapes, key=lambda s: (abs(np.log(s[0] / hidden)), abs(np.log(s[1] / batch))))
        self.rows, self.all = [r for r in rows if (r["hidden"], r["batch"]) == self.shape], rows
        self.overhead = np.polyfit(
            [j["seq_len"] for j in doc["jobs"]],
            [j["cohort_wall_s"] - j["capture_s"] - j["steps"] * j["cohort_step_ms"] / 1e3 for j in doc["jobs"]],
            1,
        )  # (b, a): seconds per unit of T, seconds

    def has(self, cell: str, reg: str) -> bool:
        return any((r["cell"], r["arm"]) == (cell, reg) for r in self.all)

    def at(self, cell: str, reg: str, T: int, key: str) -> float:
        """`key` of (cell, reg) at length T, linear in T through the measured lengths; a key the nearest shape's
        rows lack (an evaluation timed at one shape only) from the rows of any shape that have it."""
        pts = self._points(self.rows, cell, reg, key) or self._points(self.all, cell, reg, key)
        if not pts:
            raise ConfigError(
                "estimate", f"{cell}-{reg}", "a variant measured by benchmark.perf.gpu_cohort", f"no {key}"
            )
        if len(pts) == 1:
            return float(pts[0][1])
        k = min(max(int(np.searchsorted([p[0] for p in pts], T)), 1), len(pts) - 1)
        (t0, v0), (t1, v1) = pts[k - 1], pts[k]
        return float(max(v0 + (v1 - v0) * (T - t0) / (t1 - t0), 0.0))

    @staticmethod
    def _points(rows: list[dict[str, Any]], cell: str, reg: str, key: str) -> list[tuple[int, float]]:
        """(T, value) of (cell, reg), one per length (the mean where shapes repeat a length)."""
        by_t: dict[int, list[float]] = {}
        for r in rows:
            if (r["cell"], r["arm"]) == (cell, reg) and key in r:
                by_t.setdefault(int(r["seq_len"]), []).append(float(r[key]))
        return sorted((t, float(np.mean(v))) for t, v in by_t.items())


def load(hidden: int, batch: int, accel: str = "graph", path: Path = BASELINE) -> Costs:
    """The costs of one `accel` in the measured file, at the measured shape nearest (hidden, batch)."""
    return Costs(json.loads(path.read_text(encoding="utf-8")), hidden, batch, accel)
