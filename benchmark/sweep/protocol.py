"""A claims experiment in two multiruns: tuning seeds over the settings grid, then confirmation
seeds at the settings the tuning seeds chose (and only there).

The experiment declares a `protocol:` block (conf/experiment/claims.yaml): tuning and confirmation
seeds, the learning-rate grid, the dropout probabilities tuned for arms that drop out, cells, arms,
and per regime its lengths (the first one tunes) and shorter budgets for cells that never learn.

    python -m benchmark.sweep.protocol tune claims results/claims     # the tuning multiruns' overrides, one per line
    python -m benchmark.sweep.protocol confirm claims results/claims  # selects, prints the confirmation ones

Each step writes Hydra design files (one per grid cell: regime, cell, arm, length and settings)
under `results/<sweep>/plan/{tune,confirm}/design/` and prints the overrides of its multiruns (one per line),
which adds that folder to Hydra's search path. `confirm` selects with `comparisons.lr_table` on
the tuning seeds' validation scores, once per task x cell x arm, writes `plan/chosen.csv`, and
refuses to run while a tuning run is missing. Both steps are deterministic, so a second
`make sweep` finds the same run ids and skips what is complete (resumable). `has` exits 0
when the experiment declares a protocol. Imports no Hydra: the experiment file is plain YAML.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import yaml
from omegaconf import OmegaConf

from benchmark.analysis import aggregate
from benchmark.core.config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
DROPOUT_ARMS = ("dropout", "both")


@dataclass(frozen=True)
class Regime:
    name: str
    lengths: tuple[int, ...]  # lengths[0] tunes; every length confirms
    steps: dict[str, int] = field(default_factory=dict)  # cell -> a shorter budget (cells that never learn)
    cells: tuple[str, ...] = ()  # this regime's cells and arms (default: the protocol's)
    regs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protocol:
    tuning_seeds: tuple[int, ...]
    confirmation_seeds: tuple[int, ...]
    lr: tuple[float, ...]
    dropout_p: tuple[float, ...]
    cells: tuple[str, ...]
    regs: tuple[str, ...]
    regimes: tuple[Regime, ...]
    # arms whose confirmation seeds also run every other rate of the grid at the first length (claim (f):
    # spread over the rates on seeds that selected nothing); those runs never enter selection or verdicts
    rate_grid_arms: tuple[str, ...] = ()


def _need(block: dict[str, Any], key: str) -> Any:
    if key not in block or block[key] in (None, [], {}):
        raise ConfigError(f"protocol.{key}", block.get(key), "a non-empty value (conf/experiment/claims.yaml)")
    return block[key]


def parse(block: Any) -> Protocol:
    """The `protocol:` block, checked: disjoint seed sets, every regime with at least one length."""
    if not isinstance(block, dict):
        raise ConfigError(
            "protocol", block, "a mapping with tuning_seeds, confirmation_seeds, lr, cells, regs, regimes"
        )
    tune, conf = tuple(map(int, _need(block, "tuning_seeds"))), tuple(map(int, _need(block, "confirmation_seeds")))
    if set(tune) & set(conf):
        raise ConfigError("protocol.confirmation_seeds", list(conf), "seeds disjoint from protocol.tuning_seeds")
    cells, regs = tuple(_need(block, "cells")), tuple(_need(block, "regs"))
    regimes = []
    for name, r in _need(block, "regimes").items():
        r = r or {}
        lengths = tuple(int(x) for x in _need(r, "lengths"))
        regimes.append(
            Regime(
                name,
                lengths,
                {str(k): int(v) for k, v in (r.get("steps") or {}).items()},
                tuple(r.get("cells") or cells),
                tuple(r.get("regs") or regs),
            )
        )
    return Protocol(
        tune,
        conf,
        tuple(map(float, _need(block, "lr"))),
        tuple(map(float, block.get("dropout_p") or [])),
        cells,
        regs,
        tuple(regimes),
        _rate_grid_arms(block, regs),
    )


def _rate_grid_arms(block: dict[str, Any], regs: tuple[str, ...]) -> tuple[str, ...]:
    arms = tuple(block.get("rate_grid_arms") or ())
    if not set(arms) <= set(regs):
        raise ConfigError("protocol.rate_grid_arms", list(arms), f"arms of protocol.regs: {list(regs)}")
    return arms


def experiment_cfg(name: str) -> dict[str, Any]:
    """conf/experiment/<name>.yaml merged over the experiments its defaults list builds on, as Hydra composes
    them into every run's config.yaml (the `protocol:` block here, the budget in `benchmark.perf.estimate`)."""
    path = CONF / "experiment" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError("EXPERIMENT", name, sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged = OmegaConf.create({})
    for entry in own.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            merged = OmegaConf.merge(merged, experiment_cfg(entry))
    own = {k: v for k, v in own.items() if k != "defaults"}
    return OmegaConf.to_container(OmegaConf.merge(merged, own))  # type: ignore[return-value]


def block_of(experiment: str) -> Any:
    """The `protocol:` block of conf/experiment/<experiment>.yaml merged over the experiments it builds on."""
    return experiment_cfg(experiment).get("protocol")


def load(experiment: str) -> Optional[Protocol]:
    """The protocol of conf/experiment/<experiment>.yaml, or None when it declares none."""
    block = block_of(experiment)
    return None if block is None else parse(block)


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


def _write(folder: Path, files: dict[str, str]) -> list[str]:
    (folder / "design").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / "design" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return sorted(files)


def _overrides(folder: Path, designs: list[str], seeds: Sequence[int], extra: Sequence[str] = ()) -> str:
    return " ".join(
        [
            f"hydra.searchpath=[file://{folder.resolve()}]",
            "design=" + ",".join(designs),
            *extra,
            "seed=" + ",".join(map(str, seeds)),
        ]
    )


def tune(proto: Protocol, sweep_dir: Path) -> list[str]:
    """Write the tuning designs and return the overrides of the tuning multiruns, one per line of the CLI:
    the arms without dropout, then (when the protocol tunes dropout p) the arms that drop out, with
    `reg.dropout.p` swept like the seeds and rates (a cohort axis of conf/experiment/claims.yaml: each
    arm's seeds x rates x p train as one job). Two multiruns because Hydra sweeps a key for every design."""
    plain, dropping = {}, {}
    for rg in proto.regimes:
        for cell in rg.cells:
            for reg in rg.regs:
                files = dropping if reg in DROPOUT_ARMS and proto.dropout_p else plain
                files[f"t_{rg.name}_{cell}_{reg}"] = design_file(rg, cell, reg, rg.lengths[0])
    folder = sweep_dir / "plan" / "tune"
    lrs = "train.lr=" + ",".join(f"{x:g}" for x in proto.lr)
    ps = "reg.dropout.p=" + ",".join(f"{x:g}" for x in proto.dropout_p)
    stages = [(plain, [lrs]), (dropping, [lrs, ps])]
    return [_overrides(folder, _write(folder, files), proto.tuning_seeds, extra) for files, extra in stages if files]


def chosen_settings(proto: Protocol, sweep_dir: Path) -> pd.DataFrame:
    """The setting each task x cell x arm's tuning seeds selected; an error while any tuning run is missing."""
    from benchmark.analysis import comparisons  # scipy's statistics: only where a step selects

    summary = comparisons.add_variants(aggregate.aggregate(sweep_dir, warn=lambda m: None).summary)
    tuned = summary[summary["seed"].isin(proto.tuning_seeds)]
    done = tuned[tuned["status"].isin(("ok", "diverged"))]
    per_arm = len(proto.lr) * len(proto.tuning_seeds)
    expected = sum(
        per_arm * (len(proto.dropout_p) if r in DROPOUT_ARMS and proto.dropout_p else 1) * len(rg.cells)
        for rg in proto.regimes
        for r in rg.regs
    )
    if int(tuned["status"].isin(("ok", "diverged", "failed")).sum()) < expected:
        raise ConfigError(
            "tuning runs",
            f"{len(done)} of {expected} finished",
            "every tuning run finished (re-run `make sweep`: complete runs are skipped)",
        )
    t = comparisons.lr_table(done.assign(seq_len=done["seq_len"].astype(int)), proto.tuning_seeds)
    return t[t["selected"]].assign(reg=lambda x: x["variant"].map(comparisons.family)).reset_index(drop=True)


def confirm(proto: Protocol, sweep_dir: Path) -> str:
    """Select on the tuning seeds, write one design per regime x length x cell x arm at its chosen
    setting (plan/chosen.csv lists them), plus the other rates of `rate_grid_arms` at the first length,
    and return the confirmation multirun's overrides."""
    chosen = chosen_settings(proto, sweep_dir)
    (sweep_dir / "plan").mkdir(parents=True, exist_ok=True)
    chosen.to_csv(sweep_dir / "plan" / "chosen.csv", index=False)
    files = {}
    for rg in proto.regimes:
        task = _regime_task(rg)
        for r in chosen[chosen["task"].astype(str).str.startswith(task)].itertuples():
            p = None if pd.isna(r.dropout_p) else float(r.dropout_p)
            for T in rg.lengths:
                files[f"c_{rg.name}_T{T}_{r.cell}_{r.reg}"] = design_file(rg, r.cell, r.reg, T, lr=float(r.lr), p=p)
            if r.reg in proto.rate_grid_arms:  # claim (f): the other rates too, at the first length
                T = rg.lengths[0]
                for lr in (x for x in proto.lr if x != float(r.lr)):
                    files[f"c_{rg.name}_T{T}_{r.cell}_{r.reg}_lr{lr:g}"] = design_file(rg, r.cell, r.reg, T, lr=lr, p=p)
    folder = sweep_dir / "plan" / "confirm"
    return _overrides(folder, _write(folder, files), proto.confirmation_seeds)


def _regime_task(rg: Regime) -> str:
    """The task a regime file selects (`defaults: - override /task: <name>`)."""
    cfg = yaml.safe_load((CONF / "regime" / f"{rg.name}.yaml").read_text(encoding="utf-8")) or {}
    for entry in cfg.get("defaults", []):
        if isinstance(entry, dict) and "override /task" in entry:
            return str(entry["override /task"])
    raise ConfigError(f"regime {rg.name}", "no task", "a regime that selects its task (override /task: <name>)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.sweep.protocol", description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["has", "tune", "confirm"])
    ap.add_argument("experiment", help="a name under conf/experiment/")
    ap.add_argument("sweep_dir", nargs="?", help="results/<sweep>")
    args = ap.parse_args(argv)
    try:
        proto = load(args.experiment)
        if args.step == "has" or proto is None:
            return 0 if proto is not None else 1
        if not args.sweep_dir:
            ap.error(f"{args.step} needs the sweep folder")
        stages = tune(proto, Path(args.sweep_dir)) if args.step == "tune" else [confirm(proto, Path(args.sweep_dir))]
        print("\n".join(stages))
    except (ConfigError, aggregate.ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
