"""Side-by-side timing for the benchmarks: each timed round of a step follows one round of its reference.

pytest-benchmark times `step` (pedantic, one iteration per round); its untimed `setup` runs and times
`ref_step` just before, so load that slows a round slows both and their ratio round by round holds.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def interleaved_rounds(
    benchmark: Any, step: Callable[[], None], ref_step: Callable[[], None], rounds: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Pedantic rounds of `step`, each after one `ref_step`; the (reference, step) seconds past the warm-up."""
    ref_s: list[float] = []
    var_s: list[float] = []

    def setup() -> None:
        t0 = time.perf_counter()
        ref_step()
        ref_s.append(time.perf_counter() - t0)

    def target() -> None:
        t0 = time.perf_counter()
        step()
        var_s.append(time.perf_counter() - t0)

    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    return ref_s[warmup:], var_s[warmup:]
