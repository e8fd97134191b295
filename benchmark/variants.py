"""The variants the suite benchmarks and reports, defined once (torch-free).

A variant is a regulariser with its placement — `none`, `bn.recurrent`, `dropout.output`,
`both`, … — built from Hydra overrides of the `reg` group, exactly what a user types:

    python -m benchmark.run reg=bn reg.bn.placement=input      # the `bn.input` variant

The step benchmarks (tests/bench/bench_step.py), `benchmark.gpu_bench` and
`benchmark.bench_check` build and name variants from this registry only, so one
`register(Variant(...))` makes a new placement or arm appear in all of them. Each entry
carries its paper and a one-line description (for the report) and, where the suite sets
one, its speed target: the largest step time allowed as a ratio to the reference,
`native` `none` of the same cell and length, measured in the same process.

Benchmark ids read `<cell>-<impl>-<variant>-T<seq_len>`, e.g. `lstm-custom-bn.recurrent-T50`;
the committed CPU baseline (benchmark/baselines/cpu.json) is keyed by them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from benchmark.config import RegConfig

IMPLS = ("native", "custom")
REFERENCE = "none"  # the variant every ratio is taken against, on REFERENCE_IMPL
REFERENCE_IMPL = "native"
DEVICES = ("cpu", "gpu")
REG_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "reg"


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
    """

    name: str
    overrides: tuple[str, ...]
    impls: tuple[str, ...]
    paper: str
    description: str
    targets: Mapping[tuple[str, str], float] = field(default_factory=dict, compare=False, hash=False)

    @property
    def reg(self) -> str:
        """The `reg` config group option, e.g. `bn` (conf/reg/bn.yaml)."""
        return self.overrides[0].split("=", 1)[1]

    @property
    def reg_dotlist(self) -> list[str]:
        """The remaining overrides relative to the reg node: `bn.placement=recurrent`."""
        return [o[len("reg."):] for o in self.overrides[1:]]

    def target(self, impl: str, device: str = "cpu") -> Optional[float]:
        """The speed target on `device` for `impl`, or None where the suite sets none."""
        return self.targets.get((device, impl))


_REGISTRY: dict[str, Variant] = {}


def _check(v: Variant) -> None:
    if not v.name or any(ch in v.name for ch in "-+ /=,"):
        raise ValueError(f"variant name {v.name!r}: non-empty, without '-', '+', '/', '=', ',' or spaces "
                         "(it is part of benchmark ids such as lstm-custom-<name>-T50)")
    if not v.overrides or not v.overrides[0].startswith("reg=") or v.overrides[0] == "reg=":
        raise ValueError(f"variant {v.name!r}: overrides must start with 'reg=<option of conf/reg/>', "
                         f"got {list(v.overrides)}")
    bad = [o for o in v.overrides[1:] if not o.startswith("reg.") or "=" not in o]
    if bad:
        raise ValueError(f"variant {v.name!r}: further overrides must read 'reg.<key>=<value>', got {bad}")
    if not v.impls or set(v.impls) - set(IMPLS):
        raise ValueError(f"variant {v.name!r}: impls must be a non-empty subset of {IMPLS}, got {v.impls}")
    for device, impl in v.targets:
        if device not in DEVICES or impl not in IMPLS:
            raise ValueError(f"variant {v.name!r}: target keys are (device in {DEVICES}, impl in {IMPLS}), "
                             f"got {(device, impl)}")


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


def reg_config(v: Variant, extra: Sequence[str] = ()) -> RegConfig:
    """The typed RegConfig of a variant: conf/reg/<reg>.yaml, its overrides, then `extra` (e.g. `dropout.p=0.3`).

    The same composition Hydra does for `reg=<reg> reg.<key>=<value>` on the command line.
    """
    from omegaconf import OmegaConf

    path = REG_CONF_DIR / f"{v.reg}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"variant {v.name!r}: no config {path} for its override reg={v.reg}")
    node = OmegaConf.merge(OmegaConf.structured(RegConfig), OmegaConf.load(path),
                           OmegaConf.from_dotlist([*v.reg_dotlist, *extra]))
    return OmegaConf.to_object(node)


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


def bench_plan(cells: Sequence[str], seq_lens: Sequence[int],
               variants: Optional[Sequence[Variant]] = None) -> list[BenchPoint]:
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
        raise ValueError(f"benchmark id {bench_id!r}: variant {name!r} is not registered "
                         f"(benchmark/variants.py: {', '.join(_REGISTRY)})")
    return BenchPoint(cell, impl, _REGISTRY[name], int(t))


def reference_id(bench_id: str) -> str:
    """The id of the reference a benchmark id's ratio is taken against."""
    return parse_bench_id(bench_id).reference.id


# --- the registry -----------------------------------------------------------------------------
# Papers and placements: README "The ablation axes". CPU targets: README "Timing benchmarks";
# GPU targets: README "GPU performance".

register(Variant(
    "none", ("reg=none",), ("native", "custom"), "",
    "no regularisation: the baseline every effect is measured against",
    targets={("cpu", "custom"): 2.0, ("gpu", "custom"): 2.0}))
register(Variant(
    "bn.recurrent", ("reg=bn", "reg.bn.placement=recurrent"), ("custom",),
    "Cooijmans et al. 2016, Recurrent Batch Normalization",
    "per-step BN of W_x·x and W_h·h (+ the LSTM cell state), population statistics per step",
    targets={("cpu", "custom"): 3.0, ("gpu", "custom"): 3.0}))
register(Variant(
    "bn.input", ("reg=bn", "reg.bn.placement=input"), ("custom",),
    "Laurent et al. 2016, Batch Normalized Recurrent Neural Networks",
    "BN of W_x·x only, sequence-wise statistics (over batch and time)"))
register(Variant(
    "bn.output", ("reg=bn", "reg.bn.placement=output"), ("native",), "",
    "BN over the features of each layer's output sequence, between layers and before the head"))
register(Variant(
    "dropout.output", ("reg=dropout", "reg.dropout.placement=output"), ("native", "custom"),
    "Zaremba et al. 2014, Recurrent Neural Network Regularization",
    "dropout on hidden non-recurrent connections (between layers, the head's input; with tokens in, the "
    "embedding's output), a fresh mask per step",
    targets={("cpu", "native"): 1.3}))
register(Variant(
    "dropout.variational", ("reg=dropout", "reg.dropout.placement=variational"), ("custom",),
    "Gal & Ghahramani 2016, A Theoretically Grounded Application of Dropout in RNNs",
    "one mask per sequence between layers, on the head's input (with tokens in, the embedding's output) and the "
    "recurrent state",
    targets={("gpu", "custom"): 2.5}))
register(Variant(
    "dropout.recurrent", ("reg=dropout", "reg.dropout.placement=recurrent"), ("custom",),
    "Semeniuta et al. 2016, Recurrent Dropout without Memory Loss",
    "dropout on the candidate update only (LSTM g, GRU n), a fresh mask per step; an embedding's output is not "
    "dropped"))
register(Variant(
    "both", ("reg=both",), ("custom",), "Cooijmans et al. 2016 + Zaremba et al. 2014",
    "the default BN placement (recurrent) plus the default dropout placement (output)"))
register(Variant(
    "ln", ("reg=ln",), ("custom",), "Ba, Kiros & Hinton 2016, Layer Normalization",
    "per-step layer norm of W_x·x and W_h·h (+ the LSTM cell state), the same in training and eval",
    targets={("cpu", "custom"): 3.0}))
register(Variant(
    "zoneout", ("reg=zoneout",), ("custom",),
    "Krueger et al. 2017, Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations",
    "each unit of h (p_h) and of the LSTM cell c (p_c) keeps its previous value with probability p; "
    "the expectation at eval",
    targets={("cpu", "custom"): 2.5}))
