"""The frozen design a claims sweep declared before any run: `results/<sweep>/plan/design.json`.

The protocol writes it (the experiment's `protocol:` block, hashed, with the seeds derived from it);
the analysis reads from it, never from conf/, what it must test: the testability gate's margin, each
claim's primary test (its points and margin, and the claim's own parameters) and the positive
controls. A sweep without the file (older sweeps, `quick`, `full`) has no declared tests: its claims
are exploratory. A malformed file is a `ConfigError` naming the key, the value and what is allowed.

    {"experiment": "claims_cpu", "hash": "3f9a1c0b2d4e",
     "tuning_seeds": [...], "confirmation_seeds": [...],
     "design": {"gate": {"learned_margin": 0.05},
                "claims": {"a": {"points": [{"task": <task>, "seq_len": 100, "cell": "lstm"}], "margin": 1.25},
                           "h": {"needs": "claims_gpu", "why": "needs n ~ 90 seeds per arm"}, ...},
                "controls": [{"name": "gated_beat_rnn", "claim": "g", "point": {...}, "source": "..."}],
                ...the rest of the protocol block}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from benchmark.core.config import ConfigError

DESIGN_FILE = Path("plan") / "design.json"
LEARNED_MARGIN = 0.05  # the gate's margin where no design declares one (exploratory sweeps)
CLAIM_KEYS = ("a", "b", "c", "d", "e", "f", "g", "h")
# what a claim's entry may declare besides its points; each claim reads the ones it uses (claims.py)
PARAMETERS = ("margin", "cap_decades", "fraction", "ratio")


@dataclass(frozen=True)
class ClaimSpec:
    """One claim's declared primary test: where (points), and its parameters; or why it cannot run here."""

    key: str
    points: tuple[dict[str, Any], ...] = ()
    params: dict[str, float] = field(default_factory=dict)
    needs: str = ""  # another regime (`claims_gpu`) carries this claim
    why: str = ""


@dataclass(frozen=True)
class Control:
    """A positive control: an effect whose direction the literature establishes, at one point."""

    name: str
    claim: str
    point: dict[str, Any]
    source: str


@dataclass(frozen=True)
class Design:
    experiment: str
    hash: str
    tuning_seeds: tuple[int, ...]
    confirmation_seeds: tuple[int, ...]
    learned_margin: float
    claims: dict[str, ClaimSpec]
    controls: tuple[Control, ...]


def load(sweep_dir: Path) -> Optional[Design]:
    """The sweep's design, or None where it has none; `ConfigError` where the file is malformed."""
    path = Path(sweep_dir) / DESIGN_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(str(DESIGN_FILE), str(e), "a JSON file as the protocol writes it") from e
    return parse(doc)


def parse(doc: Any) -> Design:
    """The design from its JSON document, checked."""
    if not isinstance(doc, dict) or not isinstance(doc.get("design"), dict):
        raise ConfigError("design.json", type(doc).__name__, "an object with a `design` object")
    block = doc["design"]
    gate = block.get("gate") or {}
    margin = _number(gate, "learned_margin", "design.gate.learned_margin", LEARNED_MARGIN)
    claims = {k: _claim(k, v) for k, v in (_mapping(block, "claims") or {}).items()}
    controls = tuple(_control(i, c) for i, c in enumerate(block.get("controls") or []))
    for c in controls:
        if c.claim not in CLAIM_KEYS:
            raise ConfigError(f"design.controls.{c.name}.claim", c.claim, f"one of {list(CLAIM_KEYS)}")
    return Design(
        str(doc.get("experiment", "")),
        str(doc.get("hash", "")),
        tuple(int(s) for s in doc.get("tuning_seeds") or ()),
        tuple(int(s) for s in doc.get("confirmation_seeds") or ()),
        margin,
        claims,
        controls,
    )


def _mapping(block: Mapping[str, Any], key: str) -> Optional[Mapping[str, Any]]:
    v = block.get(key)
    if v is not None and not isinstance(v, dict):
        raise ConfigError(f"design.{key}", v, "a mapping")
    return v


def _number(block: Mapping[str, Any], key: str, name: str, default: float) -> float:
    v = block.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ConfigError(name, v, "a positive number")
    return float(v)


def _claim(key: str, entry: Any) -> ClaimSpec:
    name = f"design.claims.{key}"
    if key not in CLAIM_KEYS:
        raise ConfigError(name, key, f"claims {list(CLAIM_KEYS)}")
    if not isinstance(entry, dict):
        raise ConfigError(name, entry, "a mapping with `points` (and a margin), or `needs` and `why`")
    unknown = set(entry) - {"points", "needs", "why", *PARAMETERS}
    if unknown:
        raise ConfigError(
            f"{name}.{sorted(unknown)[0]}",
            entry[sorted(unknown)[0]],
            f"keys points, needs, why, {', '.join(PARAMETERS)}",
        )
    if entry.get("needs"):
        return ClaimSpec(key, needs=str(entry["needs"]), why=str(entry.get("why", "")))
    points = entry.get("points")
    if not isinstance(points, list) or not points or not all(isinstance(p, dict) and p for p in points):
        raise ConfigError(f"{name}.points", points, "a non-empty list of points, each a mapping of run columns")
    params = {p: _number(entry, p, f"{name}.{p}", 1.0) for p in PARAMETERS if p in entry}
    return ClaimSpec(key, tuple(dict(p) for p in points), params)


def _control(i: int, c: Any) -> Control:
    if not isinstance(c, dict) or not {"name", "claim", "point"} <= set(c) or not isinstance(c["point"], dict):
        raise ConfigError(f"design.controls[{i}]", c, "a mapping with name, claim, point (and source)")
    return Control(str(c["name"]), str(c["claim"]), dict(c["point"]), str(c.get("source", "")))


def describe(point: Mapping[str, Any]) -> str:
    """A point as the report prints it: `adding T=100 lstm`."""
    parts = [str(point[k]) if k != "seq_len" else f"T={point[k]}" for k in ("task", "seq_len", "cell") if k in point]
    parts += [f"{k}={v}" for k, v in point.items() if k not in ("task", "seq_len", "cell")]
    return " ".join(parts)
