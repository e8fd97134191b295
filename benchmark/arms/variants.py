"""The variants the suite benchmarks and reports, defined once (torch-free).

A variant is a regulariser with its placement — `none`, `bn.recurrent`, `dropout.output`,
`both`, … — built from Hydra overrides of the `reg` group, exactly what a user types:

    python -m benchmark.run reg=bn reg.bn.placement=input      # the `bn.input` variant

The registry is derived from the arms: every `conf/reg/<option>.yaml` names its arm class
(`_target_`), and the class declares its variants (`Arm.variants`: placements, paper, one-line
description, impls and speed targets). A new arm's module and YAML therefore make it appear
in the step benchmarks (tests/bench/bench_step.py), `benchmark.perf.gpu_bench`, `benchmark.perf.bench_check`
and the report with no edit here. A speed target is the largest step time allowed as a ratio to
the reference, `native` `none` of the same cell and length, measured in the same process.

A user's arms from their own folder (`conf/reg/<name>.yaml` with a `_target_`, on `hydra.searchpath`) join the
registry through `register_search_path`, where a tool takes the search path (`benchmark.perf.gpu_bench -- ...`).

Benchmark ids read `<cell>-<impl>-<variant>-T<seq_len>`, e.g. `lstm-custom-bn.recurrent-T50`;
the committed CPU baseline (benchmark/baselines/cpu.json) is keyed by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from benchmark.arms import base as arms
from benchmark.core.confpath import SearchPath

IMPLS = ("native", "custom")
REFERENCE = "none"  # the variant every ratio is taken against, on REFERENCE_IMPL
REFERENCE_IMPL = "native"
DEVICES = ("cpu", "gpu")
REG_CONF_DIR = arms.REG_CONF_DIR


@dataclass(frozen=True)
class Variant:
    """One registered variant.

    Attributes:
        name: `<reg>` or `<reg>.<placement>`, e.g. `bn.recurrent`; used in every id and table.
        overrides: Hydra overrides that build it: `reg=<group option>` first, then `reg.<key>=<value>`.
        impls: the impls the benchmarks time it on (`native` and/or `custom`).
        paper: the reference it follows, e.g. "Cooijmans et al. 2016" (empty for none).
        description: one line: what is regularised, where, and how.
        targets: {(device, impl): max step-time ratio to native `none`}; device `cpu` (`make bench`,
            batch 64, hidden 128) or `gpu` (`make bench-gpu`, H100, batch 64, hidden 256).
        conf_dirs: the reg/ folders its arm is composed from, first wins (a user's arm: the search path's).
    """

    name: str
    overrides: tuple[str, ...]
    impls: tuple[str, ...]
    paper: str
    description: str
    targets: Mapping[tuple[str, str], float] = field(default_factory=dict, compare=False, hash=False)
    conf_dirs: tuple[Path, ...] = field(default=(REG_CONF_DIR,), compare=False)

    @property
    def reg(self) -> str:
        """The `reg` config group option, e.g. `bn` (conf/reg/bn.yaml)."""
        return self.overrides[0].split("=", 1)[1]

    @property
    def reg_dotlist(self) -> list[str]:
        """The remaining overrides relative to the reg node: `bn.placement=recurrent`."""
        return [o[len("reg.") :] for o in self.overrides[1:]]

    def target(self, impl: str, device: str = "cpu") -> Optional[float]:
        """The speed target on `device` for `impl`, or None where the suite sets none."""
        return self.targets.get((device, impl))


_REGISTRY: dict[str, Variant] = {}


def _check(v: Variant) -> None:
    if not v.name or any(ch in v.name for ch in "-+ /=,"):
        raise ValueError(
            f"variant name {v.name!r}: non-empty, without '-', '+', '/', '=', ',' or spaces "
            "(it is part of benchmark ids such as lstm-custom-<name>-T50)"
        )
    if not v.overrides or not v.overrides[0].startswith("reg=") or v.overrides[0] == "reg=":
        raise ValueError(
            f"variant {v.name!r}: overrides must start with 'reg=<option of conf/reg/>', got {list(v.overrides)}"
        )
    bad = [o for o in v.overrides[1:] if not o.startswith("reg.") or "=" not in o]
    if bad:
        raise ValueError(f"variant {v.name!r}: further overrides must read 'reg.<key>=<value>', got {bad}")
    if not v.impls or set(v.impls) - set(IMPLS):
        raise ValueError(f"variant {v.name!r}: impls must be a non-empty subset of {IMPLS}, got {v.impls}")
    for device, impl in v.targets:
        if device not in DEVICES or impl not in IMPLS:
            raise ValueError(
                f"variant {v.name!r}: target keys are (device in {DEVICES}, impl in {IMPLS}), got {(device, impl)}"
            )


def register(v: Variant) -> Variant:
    """Add a variant to every benchmark and table; raises ValueError on a malformed or taken name."""
    _check(v)
    if v.name in _REGISTRY:
        raise ValueError(f"variant {v.name!r} is already registered")
    _REGISTRY[v.name] = v
    return v


def unregister(name: str) -> Variant:
    """Remove a variant (for tests and plugins that register their own)."""
    return _REGISTRY.pop(get(name).name)


def get(name: str) -> Variant:
    """The variant called `name`, or a KeyError that lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def all_variants() -> list[Variant]:
    """Every registered variant, in registration order (the reference first)."""
    return list(_REGISTRY.values())


def names() -> list[str]:
    return list(_REGISTRY)


def arm(v: Variant, extra: Sequence[str] = ()) -> arms.Arm:
    """The arm of a variant: reg/<reg>.yaml from its folders, its overrides, then `extra` (e.g. `dropout.p=0.3`).

    The same composition Hydra does for `reg=<reg> reg.<key>=<value>` on the command line.
    """
    return arms.load_arm(v.reg, *v.reg_dotlist, *extra, conf_dir=v.conf_dirs)


# --- benchmark ids ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPoint:
    """One timed column: a cell, an impl and a variant at one sequence length."""

    cell: str
    impl: str
    variant: Variant
    seq_len: int

    @property
    def base_id(self) -> str:
        """e.g. lstm-custom-bn.recurrent, gru-native-dropout.output."""
        return f"{self.cell}-{self.impl}-{self.variant.name}"

    @property
    def id(self) -> str:
        return f"{self.base_id}-T{self.seq_len}"

    @property
    def is_reference(self) -> bool:
        return self.variant.name == REFERENCE and self.impl == REFERENCE_IMPL

    @property
    def reference(self) -> "BenchPoint":
        """native `none` of the same cell and length: what this point's ratio is taken against."""
        return BenchPoint(self.cell, REFERENCE_IMPL, get(REFERENCE), self.seq_len)


def bench_plan(
    cells: Sequence[str], seq_lens: Sequence[int], variants: Optional[Sequence[Variant]] = None
) -> list[BenchPoint]:
    """Every (cell, T) group: the reference first, then each variant on each of its impls.

    Grouped so a group's timings are close in time; `variants` defaults to the whole registry.
    """
    chosen = all_variants() if variants is None else list(variants)
    out = []
    for cell in cells:
        for t in seq_lens:
            ref = BenchPoint(cell, REFERENCE_IMPL, get(REFERENCE), t)
            out.append(ref)
            points = (BenchPoint(cell, impl, v, t) for v in chosen for impl in IMPLS if impl in v.impls)
            out += [p for p in points if not p.is_reference]
    return out


def parse_bench_id(bench_id: str) -> BenchPoint:
    """'lstm-custom-bn.recurrent-T50' -> its BenchPoint; ValueError naming what did not match."""
    head, sep, t = bench_id.rpartition("-T")
    parts = head.split("-")
    if not sep or not t.isdigit() or len(parts) < 3:
        raise ValueError(f"benchmark id {bench_id!r}: expected <cell>-<impl>-<variant>-T<seq_len>")
    name, impl, cell = parts[-1], parts[-2], "-".join(parts[:-2])
    if impl not in IMPLS:
        raise ValueError(f"benchmark id {bench_id!r}: impl {impl!r} is not one of {IMPLS}")
    if name not in _REGISTRY:
        raise ValueError(
            f"benchmark id {bench_id!r}: variant {name!r} is not registered "
            f"(benchmark/arms/variants.py: {', '.join(_REGISTRY)})"
        )
    return BenchPoint(cell, impl, _REGISTRY[name], int(t))


def reference_id(bench_id: str) -> str:
    """The id of the reference a benchmark id's ratio is taken against."""
    return parse_bench_id(bench_id).reference.id


# --- the registry: derived from the arms of conf/reg/ --------------------------------------------


def from_arm(option: str, av: arms.ArmVariant, conf_dirs: tuple[Path, ...] = (REG_CONF_DIR,)) -> Variant:
    """The registry entry of one variant an arm declares for `reg=<option>`."""
    name = option if av.placement is None else f"{option}.{av.placement}"
    overrides = (f"reg={option}", *av.overrides)
    return Variant(name, overrides, av.impls, av.paper, av.description, dict(av.targets), conf_dirs)


def search_variants(search: SearchPath) -> list[Variant]:
    """The variants of the user's arms on a search path: the reg/ options its folders add to the package's (an
    option the package also has is the package's, as Hydra finds it), each arm loaded as a run loads it (its
    YAML's `_target_`) and declaring its own variants, paper and description. Their modules must be importable."""
    folders = search.group_dirs("reg")
    if folders == (REG_CONF_DIR,):
        return []
    own = set(arms.options())
    classes = {o: cls for o, cls in arms.arms_in(folders).items() if o not in own}
    ordered = sorted(classes, key=lambda o: (classes[o].order, o))
    return [from_arm(o, av, folders) for o in ordered for av in classes[o].variants(o)]


def register_search_path(search: SearchPath) -> list[Variant]:
    """Register the variants of the user's arms on `search` not registered yet (every tool that reads the registry
    then times and describes them); all of them, registered now or before."""
    found = search_variants(search)
    for v in found:
        if v.name not in _REGISTRY:
            register(v)
    return found


def register_arms() -> None:
    """Register every variant of every arm in conf/reg/, ordered by `Arm.order`, then option name."""
    classes = arms.package_arms()
    for option in sorted(classes, key=lambda o: (classes[o].order, o)):
        for av in classes[option].variants(option):
            register(from_arm(option, av))


register_arms()
