"""How close the custom loop comes to the fused kernel: `python -m benchmark.perf.gpu_bench`.

    python -m benchmark.perf.gpu_bench                         # CUDA (skipped cleanly without it)
    python -m benchmark.perf.gpu_bench --device cpu --hidden 32 --seq-lens 20   # the same table on CPU
    PYTHONPATH=$PWD python -m benchmark.perf.gpu_bench --variants tar -- hydra.searchpath=[file://$PWD/conf]
                                                               # a user's arm (conf/reg/tar.yaml) beside the reference

For every cell and T, in one process and at identical shapes, it times forward and
forward+loss+backward of native `none` (the reference: cuDNN on a GPU) and of every variant
registered in benchmark/arms/variants.py on each of its impls, the custom ones also with every
`--accel` speed-up (benchmark/training/accel.py). The ratio to the reference is set against each
variant's GPU target from the registry (on an H100: custom none <= 2.0x, bn.recurrent
<= 3.0x, dropout.variational <= 2.5x).

Protocol (benchmark.training.timing): every variant is built, compiled or captured first (that time
is `setup_s`, never part of throughput), warmed up, then the variants of one (cell, T)
are timed in interleaved rounds, so load that comes and goes hits them all alike. On CUDA
each call is bracketed by CUDA events and the device synchronised before reading them; on
CPU `time.perf_counter`. Median and interquartile range over all samples. Tokens/s =
batch * T / median time.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.arms import Arm
from benchmark.arms import variants as registry
from benchmark.core import confpath
from benchmark.core.config import Accel, ConfigError, Impl, Precision
from benchmark.core.io import atomic_write_json
from benchmark.job import envinfo
from benchmark.models import ModelSpec, build_model, get_cell
from benchmark.training import accel as accel_mod
from benchmark.training import allocator
from benchmark.training.precision import autocast_dtype, set_tf32, sync
from benchmark.training.timing import StepFns, median_iqr, step_fns, time_calls

SKIP_NO_CUDA = "skipped: no CUDA device (torch.cuda.is_available() is False)"
OUTPUT_SIZE = 10


@dataclass(frozen=True)
class Variant:
    """One column of the comparison: a registered variant (benchmark/arms/variants.py) on an impl, with a speed-up."""

    impl: Impl
    spec: registry.Variant
    accel: Accel = Accel.none

    @property
    def name(self) -> str:
        """e.g. native-none, custom-bn.recurrent, custom-dropout.variational+graph."""
        return f"{self.impl.value}-{self.spec.name}" + ("" if self.accel is Accel.none else f"+{self.accel.value}")

    @property
    def reg(self) -> str:
        """The registered variant's name, e.g. bn.recurrent."""
        return self.spec.name

    @property
    def target(self) -> Optional[float]:
        """Forward+backward time / native none on a GPU (benchmark/arms/variants.py); None where none is set."""
        return self.spec.target(self.impl.value, "gpu")

    def reg_config(self, p: Optional[float]) -> Arm:
        """The variant's arm; `p` (when given) replaces its dropout probability."""
        return registry.arm(self.spec, [] if p is None else [f"dropout.p={p}"])


REFERENCE = Variant(Impl(registry.REFERENCE_IMPL), registry.get(registry.REFERENCE))


def variants(accels: list[Accel], names: Optional[list[str]] = None) -> list[Variant]:
    """The reference first, then each registered variant on each of its impls (eager), then every
    custom one again with each speed-up. `names` restricts the variants (default: the whole registry)."""
    chosen = registry.all_variants() if names is None else [registry.get(n) for n in names]
    out = [REFERENCE]
    out += [Variant(Impl(impl), v) for v in chosen for impl in v.impls if Variant(Impl(impl), v) != REFERENCE]
    for a in [a for a in accels if a is not Accel.none]:
        out += [Variant(Impl.custom, v, a) for v in chosen if "custom" in v.impls]
    return out


def targets() -> dict[str, float]:
    """{impl-variant: GPU target} for every registered variant that has one."""
    return {
        f"{impl}-{v.name}": v.target(impl, "gpu")
        for v in registry.all_variants()
        for impl in registry.IMPLS
        if v.target(impl, "gpu") is not None
    }


@dataclass
class Row:
    cell: str
    seq_len: int
    variant: str
    impl: str
    reg: str  # the registered variant, e.g. bn.recurrent
    accel: str
    fwd_ms: Optional[float] = None
    fwd_ms_iqr: Optional[float] = None
    fwd_bwd_ms: Optional[float] = None
    fwd_bwd_ms_iqr: Optional[float] = None
    fwd_tokens_per_s: Optional[float] = None
    fwd_bwd_tokens_per_s: Optional[float] = None
    ratio_fwd: Optional[float] = None  # to native none, same cell and T
    ratio_fwd_bwd: Optional[float] = None
    target: Optional[float] = None  # on ratio_fwd_bwd
    verdict: str = ""  # reference | ok | over target | failed
    setup_s: Optional[float] = None  # build + compile / capture + first call; excluded from throughput
    error: Optional[str] = None
    samples_fwd: list[float] = field(default_factory=list)
    samples_fwd_bwd: list[float] = field(default_factory=list)


def _loss(y_hat: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(y_hat.float(), y)


def prepare(
    v: Variant, cell: str, args: argparse.Namespace, x: Tensor, y: Tensor, dtype: Optional[torch.dtype]
) -> tuple[StepFns, float]:
    """Build the variant on x's device and return its (fwd, fwd_bwd) calls and setup seconds.

    Setup = build + compile (the first synchronised forward+backward) or CUDA-graph capture.
    """
    device = x.device
    sync(device)
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the same initial weights for every variant of a cell
    spec = ModelSpec(
        cell=get_cell(cell),
        input_size=args.input,
        hidden_size=args.hidden,
        num_layers=1,
        output_size=OUTPUT_SIZE,
        reg=v.reg_config(args.dropout_p),
        impl=v.impl,
    )
    model: nn.Module = accel_mod.apply(build_model(spec).to(device), v.accel).train()
    if v.accel is Accel.graph:
        fns, _ = accel_mod.graph_step_fns(model, _loss, x, y, dtype)
    else:
        fns = step_fns(model, _loss, x, y, dtype)
        if v.accel is Accel.compile:
            with torch.enable_grad():
                fns[1]()  # compiles the step, forward and backward
    sync(device)
    return fns, time.perf_counter() - t0


def bench_group(
    cell: str,
    T: int,
    vs: list[Variant],
    args: argparse.Namespace,
    device: torch.device,
    dtype: Optional[torch.dtype],
    log: Callable[[str], None],
) -> list[Row]:
    """Time every variant of one (cell, T), interleaved in rounds; ratios to the reference."""
    g = torch.Generator().manual_seed(T)
    x = torch.randn(args.batch, T, args.input, generator=g).to(device)  # (B, T, I)
    y = torch.randn(args.batch, OUTPUT_SIZE, generator=g).to(device)  # (B, O)
    rows = {v: Row(cell, T, v.name, v.impl.value, v.reg, v.accel.value, target=v.target) for v in vs}
    fns: dict[Variant, StepFns] = {}
    for v in vs:
        try:
            fns[v], rows[v].setup_s = prepare(v, cell, args, x, y, dtype)
            with torch.enable_grad():
                for fn in fns[v]:
                    time_calls(fn, args.warmup, 0, device)
        except Exception as e:  # recorded in the row and the table, never silent; the rest still runs
            rows[v].error, rows[v].verdict = f"{type(e).__name__}: {e}", "failed"
            fns.pop(v, None)
            log(f"[{cell} T={T} {v.name}] failed: {rows[v].error}\n{traceback.format_exc()}")
    per_round = max(1, -(-args.repeats // args.rounds))  # ceil
    with torch.enable_grad():
        for _ in range(args.rounds):
            for v, (fwd, fwd_bwd) in fns.items():
                rows[v].samples_fwd += time_calls(fwd, 0, per_round, device)
                rows[v].samples_fwd_bwd += time_calls(fwd_bwd, 0, per_round, device)
    tokens = args.batch * T
    for v, r in rows.items():
        if r.error is not None:
            continue
        r.fwd_ms, r.fwd_ms_iqr = median_iqr(r.samples_fwd)
        r.fwd_bwd_ms, r.fwd_bwd_ms_iqr = median_iqr(r.samples_fwd_bwd)
        r.fwd_tokens_per_s, r.fwd_bwd_tokens_per_s = tokens / r.fwd_ms * 1e3, tokens / r.fwd_bwd_ms * 1e3
    ref = rows.get(REFERENCE)
    for v, r in rows.items():
        if r.error is not None or ref is None or ref.error is not None:
            continue
        r.ratio_fwd, r.ratio_fwd_bwd = r.fwd_ms / ref.fwd_ms, r.fwd_bwd_ms / ref.fwd_bwd_ms
        if v == REFERENCE:
            r.verdict = "reference"
        elif r.target is None:
            r.verdict = "no target"
        else:
            r.verdict = "ok" if r.ratio_fwd_bwd <= r.target else "over target"
    return list(rows.values())


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    """Per (cell, T, variant): the fastest custom column over all speed-ups, against its target."""
    best: dict[tuple[str, int, str], Row] = {}
    for r in rows:
        if r.impl != "custom" or r.ratio_fwd_bwd is None:
            continue
        k = (r.cell, r.seq_len, r.reg)
        if k not in best or r.ratio_fwd_bwd < best[k].ratio_fwd_bwd:
            best[k] = r
    return [
        {
            "cell": c,
            "seq_len": t,
            "variant": reg,
            "best_variant": r.variant,
            "ratio_fwd_bwd": r.ratio_fwd_bwd,
            "target": r.target,
            "verdict": r.verdict,
        }
        for (c, t, reg), r in best.items()
    ]


def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Row], summary: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in (
        "cell",
        "T",
        "variant",
        "fwd ms",
        "fwd IQR",
        "fwd+bwd ms",
        "fwd+bwd IQR",
        "tok/s fwd",
        "tok/s fwd+bwd",
        "ratio fwd",
        "ratio fwd+bwd",
        "target",
        "verdict",
        "setup s",
    ):
        table.add_column(col, justify="left" if col in ("cell", "variant", "verdict") else "right")
    for r in rows:
        table.add_row(
            r.cell,
            str(r.seq_len),
            r.variant,
            _fmt(r.fwd_ms, ".3f"),
            _fmt(r.fwd_ms_iqr, ".3f"),
            _fmt(r.fwd_bwd_ms, ".3f"),
            _fmt(r.fwd_bwd_ms_iqr, ".3f"),
            _fmt(r.fwd_tokens_per_s, ".3g"),
            _fmt(r.fwd_bwd_tokens_per_s, ".3g"),
            _fmt(r.ratio_fwd, ".2f"),
            _fmt(r.ratio_fwd_bwd, ".2f"),
            _fmt(r.target, ".1f"),
            r.verdict if r.error is None else f"failed: {r.error[:60]}",
            _fmt(r.setup_s, ".2f"),
        )
    console = Console(width=200)
    console.print(table)
    best = Table(title="best custom speed-up per cell, T and variant (forward+backward / native none)")
    for col in ("cell", "T", "variant", "best", "ratio", "target", "verdict"):
        best.add_column(col)
    for s in summary:
        best.add_row(
            s["cell"],
            str(s["seq_len"]),
            s["variant"],
            s["best_variant"],
            f"{s['ratio_fwd_bwd']:.2f}",
            _fmt(s["target"], ".1f"),
            s["verdict"],
        )
    console.print(best)


def set_precision(precision: Precision) -> Optional[torch.dtype]:
    """fp32: TF32 off everywhere (cuDNN's default is on); tf32: on; bf16: autocast, TF32 off."""
    set_tf32(precision)
    return autocast_dtype(precision)


def environment(device: torch.device, precision: Precision, start: str) -> dict[str, Any]:
    env = envinfo.collect(device, precision.value, start)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu_memory_gib=props.total_memory / 2**30,
            gpu_sm_count=props.multi_processor_count,
            gpu_capability=f"{props.major}.{props.minor}",
        )
    return env


def with_user_arms(argv: list[str]) -> list[str]:
    """The arguments before `--`. After it, a `hydra.searchpath=[...]`: the variants of the user's arms in its
    folders join the registry (their modules on PYTHONPATH), each with its own paper and description."""
    split = argv.index("--") if "--" in argv else len(argv)
    try:
        registry.register_search_path(confpath.from_overrides(argv[split + 1 :]))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return argv[:split]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    argv = with_user_arms(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(prog="python -m benchmark.perf.gpu_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--cells", nargs="+", choices=("lstm", "gru", "rnn"), default=["lstm", "gru", "rnn"])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per variant, split over --rounds")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the variants of one (cell, T)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", choices=[p.value for p in Precision], default="fp32")
    ap.add_argument(
        "--accel",
        nargs="*",
        choices=[a.value for a in Accel],
        default=None,
        help="speed-ups to add as variants (default: compile graph on cuda, none on cpu)",
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=registry.names(),
        default=None,
        help="registered variants to time besides the reference (default: all, benchmark/arms/variants.py)",
    )
    ap.add_argument(
        "--dropout-p",
        type=float,
        default=None,
        help="dropout probability of every dropout variant (default: each variant's own, 0.25)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--out", default="results/bench/gpu.json")
    args = ap.parse_args(argv)
    for k in ("batch", "hidden", "input", "repeats", "rounds"):
        if getattr(args, k) < 1:
            ap.error(f"--{k} must be >= 1, got {getattr(args, k)}")
    if args.warmup < 0 or min(args.seq_lens) < 1:
        ap.error("--warmup must be >= 0 and every --seq-lens >= 1")
    if args.dropout_p is not None and not 0.0 <= args.dropout_p < 1.0:
        ap.error(f"--dropout-p must be in [0, 1), got {args.dropout_p}")
    if args.accel is None:
        args.accel = ["compile", "graph"] if args.device == "cuda" else []
    if args.device == "cpu" and "graph" in args.accel:
        ap.error("--accel graph needs --device cuda (CUDA-graph capture)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_NO_CUDA)
        return 0
    allocator.keep_freed_memory()  # as benchmark.run does
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = Precision(args.precision)
    dtype = set_precision(precision)
    start = envinfo.now_iso()
    vs = variants([Accel(a) for a in args.accel], args.variants)
    rows: list[Row] = []

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for cell in args.cells:
        for T in args.seq_lens:
            log(f"timing {cell} T={T}: {', '.join(v.name for v in vs)}")
            rows += bench_group(cell, T, vs, args, device, dtype, log)
    summary = summarize(rows)
    env = environment(device, precision, start)
    title = (
        f"{env['device_name']} | batch {args.batch}, hidden {args.hidden}, input {args.input}, {precision.value}"
        f" | median of {args.rounds}x{max(1, -(-args.repeats // args.rounds))} calls"
        + ("" if device.type == "cuda" else " | CPU: the targets are for an H100, informative only")
    )
    print_table(rows, summary, title)
    out = {
        "schema": "gpu_bench/1",
        "args": vars(args),
        "targets": targets(),
        "timing_method": "cuda_events" if device.type == "cuda" else "perf_counter",
        "env": env,
        "rows": [asdict(r) for r in rows],
        "summary": summary,
    }
    atomic_write_json(args.out, out)  # a killed run leaves the previous file
    print(f"wrote {args.out}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
