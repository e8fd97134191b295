"""Several arms at once: each piece comes from the one part that provides it.

Two parts providing the same piece (e.g. two normalisers of W_hh·h) would need a rule for
their order, which no composition here has: that is refused when the piece is built.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from benchmark.arms.base import Arm, Site


class Composite(Arm):
    """Delegates every piece to `parts` (set by the subclass after `Arm.__init__`)."""

    parts: Sequence[Arm] = ()

    def _one(self, piece: str, *args: Any) -> Any:
        got = [(p, x) for p in self.parts if (x := getattr(p, piece)(*args)) is not None]
        if len(got) > 1:
            raise ValueError(
                f"reg={self.name}: {piece} is provided by both "
                f"{type(got[0][0]).__name__} and {type(got[1][0]).__name__}"
            )
        return got[0][1] if got else None

    def _p(self, piece: str) -> float:
        ps = [x for p in self.parts if (x := getattr(p, piece)()) > 0]
        if len(ps) > 1:
            raise ValueError(f"reg={self.name}: {piece} is set by more than one part")
        return ps[0] if ps else 0.0

    def needs_custom(self) -> list[str]:
        return [w for p in self.parts for w in p.needs_custom()]

    def norm_x(self, site: Site, features: int) -> Any:
        return self._one("norm_x", site, features)

    def norm_h(self, site: Site, features: int) -> Any:
        return self._one("norm_h", site, features)

    def norm_c(self, site: Site, features: int) -> Any:
        return self._one("norm_c", site, features)

    def state_dropout(self) -> float:
        return self._p("state_dropout")

    def candidate_dropout(self) -> float:
        return self._p("candidate_dropout")

    def zoneout(self, has_cell_state: bool) -> Optional[tuple[float, ...]]:
        return self._one("zoneout", has_cell_state)

    def weight_hh(self, site: Site, gates_hidden: int, hidden: int) -> Any:
        return self._one("weight_hh", site, gates_hidden, hidden)

    def input_dropout(self, site: Site, features: int) -> Any:
        return self._one("input_dropout", site, features)

    def hidden_dropout(self, site: Site, features: int) -> Any:
        return self._one("hidden_dropout", site, features)

    def embedding_dropout(self, site: Site, features: int) -> Any:
        return self._one("embedding_dropout", site, features)

    def output_norm(self, site: Site, features: int) -> Any:
        return self._one("output_norm", site, features)

    def penalty(self, site: Site, features: int) -> Any:
        return self._one("penalty", site, features)

    def stats_steps(self, total_len: Optional[int]) -> Optional[int]:
        return self._one("stats_steps", total_len)

    def min_batch_size(self) -> int:
        return max(p.min_batch_size() for p in self.parts)

    def precise_batches(self) -> int:
        return max(p.precise_batches() for p in self.parts)

    def identity(self, total_len: Optional[int]) -> dict[str, Any]:
        return {k: v for p in self.parts for k, v in p.identity(total_len).items()}
