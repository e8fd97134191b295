"""A claims experiment in two multiruns: tuning seeds over the settings grid, then confirmation
seeds at the settings the tuning seeds chose (and only there).

The experiment declares a `protocol:` block (conf/experiment/claims.yaml): tuning and confirmation
seeds, the learning-rate grid, the dropout probabilities tuned for arms that drop out, cells, arms,
and per regime its lengths (the first one tunes) and shorter budgets for cells that never learn.

    python -m benchmark.sweep.protocol tune claims results/claims     # the tuning multiruns' overrides, one per line
    python -m benchmark.sweep.protocol confirm claims results/claims  # selects, prints the confirmation ones
    python -m benchmark.sweep.protocol tune mine results/mine -- hydra.searchpath=[file://$PWD/conf]

Experiments, regimes, tasks and the run defaults are read from wherever a run's Hydra finds them: the package's
conf/, then the folders of the user's `hydra.searchpath` (`benchmark.core.confpath`, which every function here
takes as `search`), so an experiment and its regimes may live in the user's own folder.

Each step writes Hydra design files (one per grid cell: regime, cell, arm, length and settings)
under `results/<sweep>/plan/{tune,confirm}/design/` and prints the overrides of its multiruns (one per line),
which adds that folder to Hydra's search path. `confirm` selects with `comparisons.lr_table` on
the tuning seeds' validation scores, once per task x cell x arm, writes `plan/chosen.csv`, and
refuses to run while a tuning run is missing. Both steps are deterministic, so a second
`make sweep` finds the same run ids and skips what is complete (resumable). `has` exits 0
when the experiment declares a protocol. Composes nothing with Hydra: the experiment file is plain YAML (only a
user's `hydra.searchpath` override is read with Hydra's override grammar).

**The design is frozen before any run.** The design — the merged experiment (its protocol block: regimes,
budgets, settings grids, the gate, each claim's declared primary test and margin, the positive controls),
the regime files and their tasks' defaults, the run defaults — is hashed (`design_of`); `tune` writes it to
`results/<sweep>/plan/design.json` with the hash before the first run, and a sweep folder refuses a changed
design. The confirmation seeds are derived from the hash (`derive_seeds`): fresh seeds that no design sweep
used, and any change of a budget, margin or test gives other seeds by construction.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import yaml
from omegaconf import OmegaConf

from benchmark.analysis import aggregate
from benchmark.core import confpath
from benchmark.core.config import ConfigError
from benchmark.core.confpath import PACKAGE, SearchPath
from benchmark.core.io import atomic_write_text

DROPOUT_ARMS = ("dropout", "both")


@dataclass(frozen=True)
class Regime:
    name: str
    lengths: tuple[int, ...]  # each length tunes its own settings and confirms them
    steps: dict[str, int] = field(default_factory=dict)  # cell -> a shorter budget (cells that never learn)
    cells: tuple[str, ...] = ()  # this regime's cells and arms (default: the protocol's)
    regs: tuple[str, ...] = ()
    file: Optional[Path] = field(default=None, compare=False)  # where the search path found it (None: conf/)


@dataclass(frozen=True)
class RateGrid:
    """Claim (f)'s learning-rate grid: at one regime, length and cells, the `arms`' confirmation seeds also run
    every rate of `lr` (log-spaced); no choice is made on these runs, so none enters selection or a verdict."""

    lr: tuple[float, ...]
    regime: str
    length: int
    cells: tuple[str, ...]
    arms: tuple[str, ...]


@dataclass(frozen=True)
class Protocol:
    tuning_seeds: tuple[int, ...]
    confirmation_count: int  # confirmation seeds, derived from the design's hash (`Design.confirmation_seeds`)
    lr: tuple[float, ...]
    dropout_p: tuple[float, ...]
    cells: tuple[str, ...]
    regs: tuple[str, ...]
    regimes: tuple[Regime, ...]
    rate_grid: Optional[RateGrid] = None
    # read by the analysis (claims.py) from plan/design.json: the gate, each claim's primary test, the controls
    claims: dict[str, Any] = field(default_factory=dict)
    controls: tuple[dict[str, Any], ...] = ()
    gate: dict[str, Any] = field(default_factory=dict)
    retired_seeds: tuple[int, ...] = ()  # seeds earlier designs used: never a confirmation seed
    # the grid's points no claim or control tests run on the first this-many confirmation seeds (exploratory)
    exploratory_count: Optional[int] = None


@dataclass(frozen=True)
class Design:
    """A protocol frozen: the hashed design and the confirmation seeds derived from its hash."""

    experiment: str
    protocol: Protocol
    doc: dict[str, Any]  # everything hashed (`design_of`)
    hash: str
    confirmation_seeds: tuple[int, ...]


def _need(block: dict[str, Any], key: str) -> Any:
    if key not in block or block[key] in (None, [], {}):
        raise ConfigError(f"protocol.{key}", block.get(key), "a non-empty value (conf/experiment/claims.yaml)")
    return block[key]


CLAIM_KEYS = tuple("abcdefgh")
POINT_KEYS = ("task", "seq_len", "cell")


def parse(block: Any, search: SearchPath = PACKAGE) -> Protocol:
    """The `protocol:` block, checked: disjoint seed sets, every regime with at least one length and a file on
    the search path, the rate grid at a regime, length and cells of the protocol, claims and controls that name
    points."""
    if not isinstance(block, dict):
        raise ConfigError(
            "protocol", block, "a mapping with tuning_seeds, confirmation_count, lr, cells, regs, regimes"
        )
    tune = tuple(map(int, _need(block, "tuning_seeds")))
    count = _need(block, "confirmation_count")
    if not isinstance(count, int) or count < 2:
        raise ConfigError("protocol.confirmation_count", count, "an integer >= 2 (seeds derived from the design)")
    cells, regs = tuple(_need(block, "cells")), tuple(_need(block, "regs"))
    regimes = tuple(_regime(name, r or {}, cells, regs, search) for name, r in _need(block, "regimes").items())
    return Protocol(
        tune,
        count,
        tuple(map(float, _need(block, "lr"))),
        tuple(map(float, block.get("dropout_p") or [])),
        cells,
        regs,
        regimes,
        _rate_grid(block.get("rate_grid"), regimes),
        _claims(block.get("claims") or {}),
        _controls(block.get("controls") or []),
        dict(block.get("gate") or {}),
        tuple(map(int, block.get("retired_seeds") or [])),
        _exploratory_count(block.get("exploratory_count"), count),
    )


def _exploratory_count(v: Any, count: int) -> Optional[int]:
    if v is None:
        return None
    if not isinstance(v, int) or not 2 <= v <= count:
        raise ConfigError("protocol.exploratory_count", v, f"an integer in [2, confirmation_count = {count}] or null")
    return v


# The arms each claim's comparison reads at its points (claims.py compares them); (g) also reads the tanh RNN.
CLAIM_ARMS = {
    "a": ("none", "bn"),
    "b": ("none", "bn"),
    "c": ("none", "dropout"),
    "d": ("none", "bn", "dropout", "both"),
    "e": ("none", "bn"),
    "f": ("none", "bn"),
    "g": ("none",),
    "h": ("none", "dropout"),
}


def tested_points(proto: Protocol) -> set[tuple[str, int, str, str]]:
    """(task, seq_len, cell, arm) of every run a claim's primary test, a control or claim (f)'s rate grid reads —
    at (g)'s points the tanh RNN's `none` too (its baseline): these run on every confirmation seed."""
    uses = [(k, p) for k, c in proto.claims.items() for p in c.get("points", [])]
    uses += [(c["claim"], c["point"]) for c in proto.controls]
    out = set()
    for claim, p in uses:
        out |= {(p["task"], p["seq_len"], p["cell"], arm) for arm in CLAIM_ARMS[claim]}
        if claim == "g":
            out.add((p["task"], p["seq_len"], "rnn", "none"))
    grid = proto.rate_grid
    if grid is not None:
        task = regime_task(next(r for r in proto.regimes if r.name == grid.regime))
        out |= {(task, grid.length, cell, arm) for cell in grid.cells for arm in grid.arms}
    return out


def _regime(name: str, r: dict[str, Any], cells: tuple[str, ...], regs: tuple[str, ...], search: SearchPath) -> Regime:
    lengths = tuple(int(x) for x in _need(r, "lengths"))
    steps = {str(k): int(v) for k, v in (r.get("steps") or {}).items()}
    file = search.require("regime", name, "protocol.regimes")
    return Regime(name, lengths, steps, tuple(r.get("cells") or cells), tuple(r.get("regs") or regs), file)


def _rate_grid(block: Any, regimes: tuple[Regime, ...]) -> Optional[RateGrid]:
    if not block:
        return None
    rg = {r.name: r for r in regimes}.get(block.get("regime"))
    if rg is None:
        raise ConfigError("protocol.rate_grid.regime", block.get("regime"), [r.name for r in regimes])
    grid = RateGrid(
        tuple(map(float, _need(block, "lr"))),
        rg.name,
        int(block.get("length", rg.lengths[0])),
        tuple(block.get("cells") or rg.cells),
        tuple(block.get("arms") or ("none", "bn")),
    )
    if grid.length not in rg.lengths:
        raise ConfigError("protocol.rate_grid.length", grid.length, list(rg.lengths))
    if not set(grid.cells) <= set(rg.cells) or not set(grid.arms) <= set(rg.regs):
        raise ConfigError("protocol.rate_grid", [*grid.cells, *grid.arms], f"cells {rg.cells} and arms {rg.regs}")
    if len(grid.lr) < 2:
        raise ConfigError("protocol.rate_grid.lr", list(grid.lr), "at least two rates (log-spaced)")
    return grid


def _point(p: Any, key: str) -> dict[str, Any]:
    if not isinstance(p, dict) or set(p) != set(POINT_KEYS):
        raise ConfigError(key, p, f"a point: a mapping of exactly {', '.join(POINT_KEYS)}")
    return {"task": str(p["task"]), "seq_len": int(p["seq_len"]), "cell": str(p["cell"])}


def _claims(block: dict[str, Any]) -> dict[str, Any]:
    """Each claim's declared primary test: its points (one, or several: stratified) and its settings, or
    `needs` (the experiment that can inform it) with `why`."""
    out = {}
    for key, c in block.items():
        if key not in CLAIM_KEYS or not isinstance(c, dict):
            raise ConfigError(f"protocol.claims.{key}", c, f"a mapping under one of the claims {list(CLAIM_KEYS)}")
        if "needs" in c:
            out[key] = {"needs": str(c["needs"]), "why": str(c.get("why", ""))}
            continue
        pts = [_point(p, f"protocol.claims.{key}.points") for p in _need(c, "points")]
        out[key] = {**c, "points": pts}
    return out


def _controls(block: list[Any]) -> tuple[dict[str, Any], ...]:
    """Positive controls: a claim's comparison at one point where the literature establishes the direction."""
    out = []
    for i, c in enumerate(block):
        key = f"protocol.controls[{i}]"
        if not isinstance(c, dict) or not {"name", "claim", "point", "source"} <= set(c):
            raise ConfigError(key, c, "a mapping with name, claim, point, source")
        if c["claim"] not in CLAIM_KEYS:
            raise ConfigError(f"{key}.claim", c["claim"], list(CLAIM_KEYS))
        out.append({**c, "point": _point(c["point"], f"{key}.point")})
    return tuple(out)


def experiment_cfg(name: str, search: SearchPath = PACKAGE) -> dict[str, Any]:
    """experiment/<name>.yaml, found on the search path, merged over the experiments its defaults list builds on,
    as Hydra composes them into every run's config.yaml (the `protocol:` block here, the budget in
    `benchmark.perf.estimate`); a ConfigError listing every experiment on the search path when none holds it."""
    path = search.find("experiment", name)
    if path is None:
        raise ConfigError("EXPERIMENT", name, f"one of {search.options('experiment')} (experiment/ on the search path)")
    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged = OmegaConf.create({})
    for entry in own.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            merged = OmegaConf.merge(merged, experiment_cfg(entry, search))
    own = {k: v for k, v in own.items() if k != "defaults"}
    return OmegaConf.to_container(OmegaConf.merge(merged, own))  # type: ignore[return-value]


def block_of(experiment: str, search: SearchPath = PACKAGE) -> Any:
    """The `protocol:` block of experiment/<experiment>.yaml merged over the experiments it builds on."""
    return experiment_cfg(experiment, search).get("protocol")


def load(experiment: str, search: SearchPath = PACKAGE) -> Optional[Protocol]:
    """The protocol of experiment/<experiment>.yaml (regimes found on the search path), or None when it declares
    none."""
    block = block_of(experiment, search)
    return None if block is None else parse(block, search)


def _regime_yaml(rg: Regime) -> Any:
    """The regime's file, from where the search path found it (the package's conf/ for a Regime built by hand)."""
    path = rg.file or PACKAGE.require("regime", rg.name, "protocol.regimes")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def regime_cfg(rg: Regime) -> dict[str, Any]:
    """The regime's settings (an empty file: none)."""
    return _regime_yaml(rg) or {}


def design_of(experiment: str, proto: Protocol, search: SearchPath = PACKAGE) -> dict[str, Any]:
    """What the hash freezes: the merged experiment (its protocol block included, but for nothing derived),
    each regime's file and its task's defaults, and the run and training defaults — each file's content from
    the folder the search path found it in, as the runs compose it (where it was found is not hashed: moving
    a study's folder keeps its design)."""
    tasks = {regime_task(rg) for rg in proto.regimes}
    return {
        "experiment": experiment,
        "config": experiment_cfg(experiment, search),
        "regimes": {rg.name: _regime_yaml(rg) for rg in proto.regimes},
        "tasks": {t: search.load("task", t) for t in sorted(tasks)},
        "defaults": {"config": search.load("", "config"), "train": search.load("train", "default")},
    }


def design_hash(doc: dict[str, Any]) -> str:
    """The first 12 hex digits of sha256 over the design's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def derive_seeds(digest: str, count: int, avoid: Sequence[int]) -> tuple[int, ...]:
    """`count` distinct seeds in [10^6, 2^31) from the design hash, none of them in `avoid` (the tuning seeds
    and every seed an earlier design used): fresh by construction, the same for the same design."""
    out: list[int] = []
    i = 0
    while len(out) < count:
        v = 10**6 + int(hashlib.sha256(f"{digest}/{i}".encode()).hexdigest()[:8], 16) % (2**31 - 10**6)
        if v not in avoid and v not in out:
            out.append(v)
        i += 1
    return tuple(out)


def freeze(experiment: str, search: SearchPath = PACKAGE) -> Design:
    """The experiment's protocol frozen: its design, hash and confirmation seeds."""
    proto = load(experiment, search)
    if proto is None:
        raise ConfigError("EXPERIMENT", experiment, "an experiment with a `protocol:` block")
    doc = design_of(experiment, proto, search)
    digest = design_hash(doc)
    seeds = derive_seeds(digest, proto.confirmation_count, (*proto.tuning_seeds, *proto.retired_seeds))
    return Design(experiment, proto, doc, digest, seeds)


def write_design(design: Design, sweep_dir: Path) -> None:
    """plan/design.json, before any run; a sweep folder that holds another design refuses this one."""
    path = sweep_dir / "plan" / "design.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if old is not None and old.get("hash") != design.hash:
        raise ConfigError(
            "SWEEP",
            str(sweep_dir),
            f"a sweep folder of this design (it holds design {old.get('hash')}, the experiment is now "
            f"{design.hash}): a changed design needs a new sweep (SWEEP=<name>)",
        )
    doc = {
        "experiment": design.experiment,
        "hash": design.hash,
        "tuning_seeds": list(design.protocol.tuning_seeds),
        "confirmation_seeds": list(design.confirmation_seeds),
        "design": design.doc["config"]["protocol"],  # what the analysis reads: gate, claims, controls, rate grid
        "frozen": design.doc,  # everything the hash covers
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, default=str))


def design_file(
    regime: Regime, cell: str, reg: str, seq_len: int, lr: Optional[float] = None, p: Optional[float] = None
) -> str:
    """One generated design: the regime, cell and arm as conf/design/ composes them, plus the settings."""
    lines = [
        "# @package _global_",
        "# generated by benchmark.sweep.protocol: do not edit",
        "defaults:",
        f"  - /regime: {regime.name}",
        f"  - override /cell: {cell}",
        f"  - override /reg: {reg}",
        "task:",
        f"  seq_len: {seq_len}",
    ]
    train = ([f"  lr: {lr!r}"] if lr is not None else []) + (
        [f"  steps: {regime.steps[cell]}"] if cell in regime.steps else []
    )
    lines += ["train:", *train] if train else []
    lines += ["reg:", "  dropout:", f"    p: {p!r}"] if p is not None else []
    return "\n".join(lines) + "\n"


def design_cost(rg: Regime, seq_len: int, cell: str, hidden: int) -> float:
    """A job's relative cost, to launch the dearest first: hidden² x T x the step budget (the regime's).
    Two workers that take the cheap jobs first leave the dearest one running alone at the stage's end."""
    regime = regime_cfg(rg)
    steps = rg.steps.get(cell) or (regime.get("train") or {}).get("steps") or 1
    return float(regime.get("hidden_size") or hidden) ** 2 * seq_len * steps


def _write(folder: Path, files: dict[str, str], cost: dict[str, float]) -> list[str]:
    """Write the designs; their names, dearest first (by `cost`), then by name."""
    (folder / "design").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / "design" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return sorted(files, key=lambda n: (-cost.get(n, 0.0), n))


def _overrides(folder: Path, designs: list[str], seeds: Sequence[int], extra: Sequence[str] = ()) -> str:
    return " ".join(
        [
            f"hydra.searchpath=[file://{folder.resolve()}]",
            "design=" + ",".join(designs),
            *extra,
            "seed=" + ",".join(map(str, seeds)),
        ]
    )


def tune(design: Design, sweep_dir: Path) -> list[str]:
    """Write plan/design.json and the tuning designs, and return the overrides of the tuning multiruns, one per
    line of the CLI: the arms without dropout, then (when the protocol tunes dropout p) the arms that drop out,
    with `reg.dropout.p` swept like the seeds and rates (a cohort axis of conf/experiment/claims.yaml: each
    arm's seeds x rates x p train as one job); a single p is set in their designs instead, in one multirun
    (an override of a key that only the design's arm has would fail at Hydra's first composition). Every
    length tunes its own settings: a rate that suits T = 30 may leave a cell at chance at T = 100, which would
    confound length with the rate. Two multiruns because Hydra sweeps a key for every design."""
    proto = design.protocol
    write_design(design, sweep_dir)
    plain, dropping, cost = {}, {}, {}
    hidden = int(design.doc["config"].get("hidden_size") or 0)
    one_p = proto.dropout_p[0] if len(proto.dropout_p) == 1 else None  # set in the design: nothing to sweep
    for rg in proto.regimes:
        for T in rg.lengths:
            for cell in rg.cells:
                for reg in rg.regs:
                    drops = reg in DROPOUT_ARMS and proto.dropout_p
                    files = dropping if drops and one_p is None else plain
                    p = one_p if drops else None
                    files[f"t_{rg.name}_T{T}_{cell}_{reg}"] = design_file(rg, cell, reg, T, p=p)
                    cost[f"t_{rg.name}_T{T}_{cell}_{reg}"] = design_cost(rg, T, cell, hidden)
    folder = sweep_dir / "plan" / "tune"
    lrs = "train.lr=" + ",".join(f"{x:g}" for x in proto.lr)
    ps = "reg.dropout.p=" + ",".join(f"{x:g}" for x in proto.dropout_p)
    stages = [(plain, [lrs]), (dropping, [lrs, ps])]
    return [
        _overrides(folder, _write(folder, files, cost), proto.tuning_seeds, extra) for files, extra in stages if files
    ]


def expected_tuning_runs(proto: Protocol) -> int:
    """Tuning runs the protocol asks for: seeds x rates (x dropout p) per regime x length x cell x arm."""
    per_arm = len(proto.lr) * len(proto.tuning_seeds)
    return sum(
        per_arm
        * (len(proto.dropout_p) if r in DROPOUT_ARMS and proto.dropout_p else 1)
        * len(rg.cells)
        * len(rg.lengths)
        for rg in proto.regimes
        for r in rg.regs
    )


def chosen_settings(proto: Protocol, sweep_dir: Path) -> pd.DataFrame:
    """The setting each task x length x cell x arm's tuning seeds selected; an error while any tuning run is
    missing."""
    from benchmark.analysis import comparisons  # scipy's statistics: only where a step selects

    summary = comparisons.add_variants(aggregate.aggregate(sweep_dir, warn=lambda m: None).summary)
    tuned = summary[summary["seed"].isin(proto.tuning_seeds)]
    done = tuned[tuned["status"].isin(("ok", "diverged"))]
    expected = expected_tuning_runs(proto)
    if int(tuned["status"].isin(("ok", "diverged", "failed")).sum()) < expected:
        raise ConfigError(
            "tuning runs",
            f"{len(done)} of {expected} finished",
            "every tuning run finished (re-run `make sweep`: complete runs are skipped)",
        )
    t = comparisons.lr_table(done.assign(seq_len=done["seq_len"].astype(int)), proto.tuning_seeds)
    return t[t["selected"]].assign(reg=lambda x: x["variant"].map(comparisons.family)).reset_index(drop=True)


def confirm(design: Design, sweep_dir: Path) -> list[str]:
    """Select on the tuning seeds, write one design per regime x length x cell x arm at its chosen setting
    (plan/chosen.csv lists them), plus claim (f)'s rate grid at its point, and return the confirmation
    multiruns' overrides, one per line: the points a claim or control tests, on every confirmation seed (the
    seeds derived from the design's hash); then, where `exploratory_count` is set, the rest of the grid on
    the first that-many of them (exploratory verdicts only)."""
    proto = design.protocol
    write_design(design, sweep_dir)  # refuses a design changed since tuning
    chosen = chosen_settings(proto, sweep_dir)
    (sweep_dir / "plan").mkdir(parents=True, exist_ok=True)
    chosen.to_csv(sweep_dir / "plan" / "chosen.csv", index=False)
    tested, explored, reads, cost = {}, {}, tested_points(proto), {}
    hidden = int(design.doc["config"].get("hidden_size") or 0)
    for rg in proto.regimes:
        task = regime_task(rg)
        for r in chosen[chosen["task"].astype(str).str.startswith(task)].itertuples():
            p = None if pd.isna(r.dropout_p) else float(r.dropout_p)
            T, grid = int(r.seq_len), proto.rate_grid
            files = tested if (str(r.task), T, r.cell, r.reg) in reads else explored
            files[f"c_{rg.name}_T{T}_{r.cell}_{r.reg}"] = design_file(rg, r.cell, r.reg, T, lr=float(r.lr), p=p)
            cost[f"c_{rg.name}_T{T}_{r.cell}_{r.reg}"] = design_cost(rg, T, r.cell, hidden)
            if grid and grid.regime == rg.name and grid.length == T and r.cell in grid.cells and r.reg in grid.arms:
                for lr in (x for x in grid.lr if x != float(r.lr)):  # claim (f): every other rate of the grid
                    name = f"c_{rg.name}_T{T}_{r.cell}_{r.reg}_lr{lr:g}"
                    tested[name] = design_file(rg, r.cell, r.reg, T, lr=lr, p=p)
                    cost[name] = design_cost(rg, T, r.cell, hidden)
    if proto.exploratory_count is None:
        tested, explored = {**tested, **explored}, {}
    folder, seeds = sweep_dir / "plan" / "confirm", design.confirmation_seeds
    stages = [(tested, seeds), (explored, seeds[: proto.exploratory_count or len(seeds)])]
    return [_overrides(folder, _write(folder, files, cost), s) for files, s in stages if files]


def regime_task(rg: Regime) -> str:
    """The task a regime file selects (`defaults: - override /task: <name>`)."""
    for entry in regime_cfg(rg).get("defaults", []):
        if isinstance(entry, dict) and "override /task" in entry:
            return str(entry["override /task"])
    raise ConfigError(f"regime {rg.name}", "no task", "a regime that selects its task (override /task: <name>)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.sweep.protocol", description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["has", "tune", "confirm"])
    ap.add_argument("experiment", help="a name under conf/experiment/ of a folder on the search path")
    ap.add_argument("sweep_dir", nargs="?", help="results/<sweep>")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)  # after it: the user's hydra.searchpath override
    args, user = ap.parse_args(argv[:split]), argv[split + 1 :]
    try:
        search = confpath.from_overrides(user)
        proto = load(args.experiment, search)
        if args.step == "has" or proto is None:
            return 0 if proto is not None else 1
        if not args.sweep_dir:
            ap.error(f"{args.step} needs the sweep folder")
        design = freeze(args.experiment, search)
        sweep_dir = Path(args.sweep_dir)
        stages = tune(design, sweep_dir) if args.step == "tune" else confirm(design, sweep_dir)
        print("\n".join(" ".join(confpath.merged([*line.split(), *search.overrides()])) for line in stages))
    except (ConfigError, aggregate.ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
