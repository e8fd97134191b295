"""Step-time regression check: pytest-benchmark JSON against a committed baseline of *ratios*.

Absolute times against a stored file cry wolf on shared CI runners (another machine, another
load). So every variant is measured as a ratio to a reference measured *in the same run,
interleaved round by round*: the suite (`tests/bench/`) runs one step of the reference
(`native`/`none` of the same cell and T) right before each timed round of the variant and
stores the per-round ratios in `extra_info["ratio_samples"]`. Load that slows both halves of
a round cancels out.

Rule (asv-like: past the threshold AND outside the noise), for each variant:
    ratio  = median of the per-round ratios; spread = [q1, q3] of them
    change = current.ratio / baseline.ratio - 1
    REGRESSION  if change > +tol and current.q1 > baseline.q3   -> exit 1
    slower?     if change > +tol but the spreads overlap        -> reported, passes
    FASTER      if change < -tol and current.q3 < baseline.q1   -> reported, passes
    MISSING     in the baseline but not measured now            -> exit 1 (unless --allow-missing)
    NEW         measured now but not in the baseline            -> reported, passes
Given several runs (the Makefile re-measures once when the first run fails), each variant
takes the run with the lowest median ratio: a regression must show in every run to fail.
A ratio cannot see a slowdown of the reference itself (every ratio would drop); the table's
footer therefore also shows the reference times next to the baseline's, for information.

    python -m benchmark.perf.bench_check results/bench/bench.json --baseline benchmark/baselines/cpu.json
    python -m benchmark.perf.bench_check run1.json run2.json --baseline ...   # confirmation
    python -m benchmark.perf.bench_check results/bench/bench.json --baseline ... --write-baseline
"""

from __future__ import annotations

import argparse
import enum
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table

from benchmark.arms import variants
from benchmark.core.io import atomic_write_text
from benchmark.training.timing import quartiles

SCHEMA_VERSION = 1


class Verdict(str, enum.Enum):
    ok = "ok"
    slower_noisy = "slower? (spread overlaps)"
    regression = "REGRESSION"
    faster = "FASTER"
    missing = "MISSING (not measured)"
    new = "NEW (no baseline)"

    @property
    def fails(self) -> bool:
        return self in (Verdict.regression, Verdict.missing)


@dataclass(frozen=True)
class Ratio:
    """One variant's time relative to its same-run reference."""

    ratio: float  # median of the per-round ratios
    low: float  # q1 of the per-round ratios
    high: float  # q3
    n: int  # rounds
    median_ms: Optional[float] = None  # the variant's own median step time (information only)
    ref_ms: Optional[float] = None  # the reference's median step time in the same rounds


@dataclass(frozen=True)
class Row:
    variant: str
    baseline: Optional[Ratio]
    current: Optional[Ratio]
    verdict: Verdict

    @property
    def change(self) -> Optional[float]:
        if self.baseline is None or self.current is None:
            return None
        return self.current.ratio / self.baseline.ratio - 1.0


def ratio_from_samples(
    samples: Sequence[float], median_ms: Optional[float] = None, ref_ms: Optional[float] = None
) -> Ratio:
    q1, med, q3 = quartiles(list(samples))
    return Ratio(ratio=med, low=q1, high=q3, n=len(samples), median_ms=median_ms, ref_ms=ref_ms)


# --- reading -----------------------------------------------------------------------------------


class BenchFileError(ValueError):
    """A JSON file that is not what the check needs; the message says which and why."""


def load_run(path: Path) -> tuple[dict[str, Ratio], dict[str, Any]]:
    """pytest-benchmark JSON -> ({variant: Ratio}, run info: machine_info, commit_info, slowdowns)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchFileError(f"{path}: cannot read pytest-benchmark JSON ({e})") from e
    if "benchmarks" not in doc:
        raise BenchFileError(f"{path}: no 'benchmarks' key; is this pytest-benchmark's --benchmark-json output?")
    out: dict[str, Ratio] = {}
    slowed: dict[str, float] = {}
    for b in doc["benchmarks"]:
        info = b.get("extra_info", {})
        vid, samples = info.get("variant"), info.get("ratio_samples")
        if not vid or not samples:
            raise BenchFileError(
                f"{path}: benchmark {b.get('fullname', b.get('name'))!r} has no "
                "extra_info.variant / extra_info.ratio_samples; run the suite in tests/bench/"
            )
        if vid in out:
            raise BenchFileError(f"{path}: variant {vid!r} appears twice")
        ref_samples = info.get("ref_ms") or []
        out[vid] = ratio_from_samples(
            samples,
            median_ms=b["stats"]["median"] * 1e3,
            ref_ms=statistics.median(ref_samples) if ref_samples else None,
        )
        if info.get("slowdown", 1.0) != 1.0:
            slowed[vid] = info["slowdown"]
    meta = {
        "machine_info": doc.get("machine_info", {}),
        "commit_info": doc.get("commit_info", {}),
        "datetime": doc.get("datetime"),
        "slowdown": slowed,
    }
    return out, meta


def load_baseline(path: Path) -> tuple[dict[str, Ratio], dict[str, Any]]:
    """Baseline JSON (written by `--write-baseline`) -> ({variant: Ratio}, its metadata)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchFileError(f"{path}: cannot read baseline ({e}); create one with --write-baseline") from e
    if doc.get("schema_version") != SCHEMA_VERSION or "variants" not in doc:
        raise BenchFileError(f"{path}: not a schema_version {SCHEMA_VERSION} baseline with 'variants'")
    variants = {k: Ratio(**v) for k, v in doc["variants"].items()}
    return variants, {k: v for k, v in doc.items() if k != "variants"}


def load_runs(paths: Sequence[Path]) -> tuple[dict[str, Ratio], dict[str, Any]]:
    """Several runs -> per variant the run with the lowest median ratio; meta of the first run."""
    merged: dict[str, Ratio] = {}
    meta: dict[str, Any] = {}
    for path in paths:
        run, m = load_run(path)
        if not meta:
            meta = m
        else:
            meta["slowdown"] = {**meta["slowdown"], **m["slowdown"]}
        for vid, r in run.items():
            if vid not in merged or r.ratio < merged[vid].ratio:
                merged[vid] = r
    return merged, meta


def machine_summary(machine_info: dict[str, Any]) -> dict[str, Any]:
    """The few machine facts that change ratios: CPU, cores, torch, threads, GPU."""
    cpu = machine_info.get("cpu", {}) or {}
    return {
        "cpu": cpu.get("brand_raw"),
        "cpu_count": cpu.get("count"),
        "python": machine_info.get("python_version"),
        "system": f"{machine_info.get('system', '')} {machine_info.get('release', '')}".strip(),
        "torch": machine_info.get("torch"),
        "torch_threads": machine_info.get("torch_threads"),
        "cuda": machine_info.get("cuda"),
        "gpu": machine_info.get("gpu"),
    }


# --- comparing ---------------------------------------------------------------------------------


def judge(base: Ratio, cur: Ratio, tolerance: float) -> Verdict:
    change = cur.ratio / base.ratio - 1.0
    if change > tolerance:
        return Verdict.regression if cur.low > base.high else Verdict.slower_noisy
    if change < -tolerance and cur.high < base.low:
        return Verdict.faster
    return Verdict.ok


def compare(baseline: dict[str, Ratio], current: dict[str, Ratio], tolerance: float) -> list[Row]:
    """One row per variant in either file, baseline order first, then new variants."""
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    rows = []
    for vid, base in baseline.items():
        cur = current.get(vid)
        rows.append(Row(vid, base, cur, Verdict.missing if cur is None else judge(base, cur, tolerance)))
    rows += [Row(vid, None, cur, Verdict.new) for vid, cur in current.items() if vid not in baseline]
    return rows


def exit_code(rows: list[Row], allow_missing: bool = False) -> int:
    """1 when any variant regressed (or went missing, unless allowed), else 0."""
    return int(any(r.verdict.fails and not (allow_missing and r.verdict is Verdict.missing) for r in rows))


# --- output ------------------------------------------------------------------------------------

_STYLE = {
    Verdict.ok: "green",
    Verdict.slower_noisy: "yellow",
    Verdict.regression: "bold red",
    Verdict.faster: "cyan",
    Verdict.missing: "bold red",
    Verdict.new: "yellow",
}


def _fmt(r: Optional[Ratio]) -> str:
    return "—" if r is None else f"{r.ratio:.3f} [{r.low:.2f}–{r.high:.2f}]"


def render(rows: list[Row], tolerance: float, title: str = "") -> Table:
    table = Table(
        title=title or f"step time / same-run reference (native none, same cell & T); tolerance {tolerance:.0%}"
    )
    for col, just in (
        ("variant", "left"),
        ("baseline ratio", "right"),
        ("current ratio", "right"),
        ("change", "right"),
        ("verdict", "left"),
    ):
        table.add_column(col, justify=just)
    for r in rows:
        change = "—" if r.change is None else f"{r.change + 0.0:+.1%}" if abs(r.change) >= 5e-4 else "+0.0%"
        table.add_row(
            r.variant, _fmt(r.baseline), _fmt(r.current), change, f"[{_STYLE[r.verdict]}]{r.verdict.value}[/]"
        )
    return table


def reference_notes(baseline: dict[str, Ratio], current: dict[str, Ratio]) -> list[str]:
    """Absolute reference times now vs in the baseline: information only (machines differ).

    Each variant's reference comes from the registry (benchmark/arms/variants.py); ids it cannot
    parse (a variant no longer registered) are listed once.
    """
    notes, seen, unknown = [], set(), []
    for vid, cur in current.items():
        try:
            ref = variants.reference_id(vid)
        except ValueError:
            unknown.append(vid)
            continue
        if ref in seen or ref not in current or current[ref].ref_ms is None:
            continue
        seen.add(ref)
        base = baseline.get(ref)
        was = f"{base.ref_ms:.2f} ms in the baseline" if base and base.ref_ms else "not in the baseline"
        notes.append(f"reference {ref}: {current[ref].ref_ms:.2f} ms now, {was}")
    if unknown:
        notes.append(f"not in the variant registry (benchmark/arms/variants.py): {', '.join(unknown)}")
    return notes


def machine_notes(base_machine: dict[str, Any], cur_machine: dict[str, Any]) -> list[str]:
    keys = ("cpu", "cpu_count", "torch", "torch_threads")
    return [
        f"machine differs from the baseline's: {k} {base_machine.get(k)!r} -> {cur_machine.get(k)!r}"
        for k in keys
        if base_machine.get(k) != cur_machine.get(k)
    ]


def write_baseline(current: dict[str, Ratio], meta: dict[str, Any], path: Path, source: str) -> None:
    """Rewrite the baseline on purpose: ratios per variant plus the machine they were taken on."""
    if meta["slowdown"]:
        raise BenchFileError(f"refusing to write a baseline from a run with injected slowdowns: {meta['slowdown']}")
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "statistic": "median of per-round ratios variant/reference (reference run interleaved); low/high = q1/q3",
        "reference": "native/none of the same cell and seq_len, measured in the same run",
        "machine": machine_summary(meta["machine_info"]),
        "commit": {k: meta["commit_info"].get(k) for k in ("id", "branch", "dirty")},
        "variants": {
            vid: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(r).items()}
            for vid, r in sorted(current.items())
        },
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def main(argv: Optional[Sequence[str]] = None, console: Optional[Console] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.perf.bench_check", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "current",
        type=Path,
        nargs="+",
        help="pytest-benchmark JSON from tests/bench (--benchmark-json); several = confirmation runs",
    )
    p.add_argument("--baseline", type=Path, required=True, help="committed baseline JSON")
    p.add_argument("--tolerance", type=float, default=0.25, help="allowed ratio increase, 0.25 = 25%% (default)")
    p.add_argument("--allow-missing", action="store_true", help="a baseline variant not measured now only warns")
    p.add_argument("--write-baseline", action="store_true", help="rewrite --baseline from this run (on purpose)")
    args = p.parse_args(argv)
    console = console or Console(width=120)
    try:
        current, meta = load_runs(args.current)
        if args.write_baseline:
            if len(args.current) != 1:
                raise BenchFileError("--write-baseline takes exactly one run")
            write_baseline(current, meta, args.baseline, source=str(args.current[0]))
            console.print(f"wrote {args.baseline}: {len(current)} variants")
            return 0
        baseline, base_meta = load_baseline(args.baseline)
        rows = compare(baseline, current, args.tolerance)
    except (BenchFileError, ValueError) as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    title = ""
    if len(args.current) > 1:
        title = (
            f"step time / same-run reference, lowest of {len(args.current)} runs per variant; "
            f"tolerance {args.tolerance:.0%}"
        )
    console.print(render(rows, args.tolerance, title))
    for line in machine_notes(base_meta.get("machine", {}), machine_summary(meta["machine_info"])):
        console.print(f"note: {line}")
    for line in reference_notes(baseline, current):
        console.print(f"note: {line}")
    if meta["slowdown"]:
        console.print(f"note: this run has deliberately injected slowdowns: {meta['slowdown']}")
    counts = {v: sum(r.verdict is v for r in rows) for v in Verdict}
    summary = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    code = exit_code(rows, args.allow_missing)
    if code:
        bad = [r.variant for r in rows if r.verdict.fails]
        console.print(f"[bold red]FAIL[/]: {summary}. Failing: {', '.join(bad)}.")
        if counts[Verdict.missing]:
            console.print(
                "Missing variants were in the baseline but not measured in this run "
                "(renamed or removed? refresh with `make bench-baseline`; or pass --allow-missing)."
            )
    else:
        console.print(f"[bold green]PASS[/]: {summary}.")
        if counts[Verdict.new] or counts[Verdict.faster]:
            console.print("New or faster variants: refresh the baseline on purpose with `make bench-baseline`.")
    return code


if __name__ == "__main__":
    sys.exit(main())
