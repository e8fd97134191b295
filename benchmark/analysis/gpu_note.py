"""The closing note of a device session (scripts/gpu_check.sh): what each part measured, in one Markdown file.

    python -m benchmark.analysis.gpu_note WORK OUT      # WORK: the script's run folders; OUT: what comes back

Reads the parts' records under WORK and writes OUT/note.md (and OUT/pmnist_curves.csv):
- which parts ran, how long, and which the window cut (WORK/parts.tsv);
- `ptb_small` (Zaremba et al. 2014's small model, their recipe): each seed's test perplexity against 114.5;
- `ptb_medium`: its runs against 82.7, or its wall time estimated from the step cost its probe measured;
- the pMNIST control (Cooijmans et al. 2016): steps to 60 % and 80 % validation accuracy per arm as survival
  data (a seed that never got there is censored at its budget), the log-rank p, and the 100k-step recipe's
  wall time from the measured cohort step;
- `make bench-gpu` (fp32, bf16): each custom variant that has a target, its ratio to cuDNN against it;
- the scaled `claims_gpu` sweep through `make sweep`: its wall time, statuses, report;
- the whole `claims_gpu` jobs and the estimate rebuilt from them (`benchmark.perf.estimate_jobs`).
Reads files only (no torch); a part that left nothing says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from benchmark.analysis import survival

ZAREMBA = {"ptb_small": 114.5, "ptb_medium": 82.7}  # test perplexity, their Table 1
MEDIUM_STEPS, MEDIUM_EVALS = 51753, 39  # ptb_medium's budget (conf/experiment/ptb_medium.yaml)
PMNIST_RECIPE_STEPS = 100_000  # Cooijmans et al.'s budget (conf/experiment/literature.yaml)
THRESHOLDS = (0.6, 0.8)  # validation accuracies whose time to reach the control compares


def records(folder: Path) -> list[dict[str, Any]]:
    """Every complete run record under folder/runs, with its history rows (`history`)."""
    out = []
    for f in sorted(Path(folder).glob("runs/*/metrics.json")):
        r = json.loads(f.read_text())
        h = f.with_name("history.csv")
        r["history"] = list(csv.DictReader(h.open())) if h.exists() else []
        out.append(r)
    return out


def cohort_step_s(rs: Sequence[dict[str, Any]]) -> Optional[float]:
    """A cohort's training step in seconds: each member's throughput is its share of the cohort's."""
    parts = [r["batch_size"] * r["total_len"] / r["train_tokens_per_s"] for r in rs if r.get("train_tokens_per_s")]
    return sum(parts) if parts else None


def parts_table(work: Path) -> list[str]:
    out = ["| part | status | seconds | cap s |", "| --- | --- | --- | --- |"]
    return out + ["| " + " | ".join(line.split("\t")) + " |" for line in _lines(work / "parts.tsv")]


def ptb_section(work: Path, name: str) -> list[str]:
    rs = records(work / name)
    if not rs:
        return [f"No `{name}` record (the part did not run or did not finish)."]
    ref = ZAREMBA[name]
    out = ["| seed | p | status | test perplexity | last validation | wall s | train tokens/s |", "| --- " * 7 + "|"]
    for r in sorted(rs, key=lambda r: (r.get("dropout_p") or 0, r["seed"])):
        val = next((row["val_metric"] for row in reversed(r["history"]) if row.get("val_metric")), "")
        out.append(
            f"| {r['seed']} | {_f(r.get('dropout_p'))} | {r['status']} | {_f(r.get('test_metric'))} | {_f(val)} "
            f"| {_f(r.get('wall_s'))} | {_f(r.get('train_tokens_per_s'))} |"
        )
    ok = [r["test_metric"] for r in rs if r["status"] == "ok" and r.get("test_metric") is not None]
    if ok:
        mean = statistics.fmean(ok)
        out.append(
            f"\nMean test perplexity {mean:.1f} over {len(ok)} run(s) against the published {ref}: "
            f"{100 * (mean / ref - 1):+.1f} % ({'within' if abs(mean / ref - 1) <= 0.05 else 'outside'} 5 %)."
        )
    return out


def medium_probe(work: Path) -> Optional[tuple[dict[str, Any], float, float, float]]:
    """ptb_medium's probe record, its step and its seconds outside training, and one seed's estimated wall time:
    the budget's steps x the measured step, plus its validations and final metrics costed at a quarter of the
    probe's time outside training each (one validation, the final metrics and start-up: an upper bound)."""
    rs = [r for r in records(work / "ptb_medium_probe") if r.get("train_tokens_per_s")]
    if not rs:
        return None
    r = rs[0]
    step = r["batch_size"] * r["total_len"] / r["train_tokens_per_s"]
    outside = max(0.0, r["wall_s"] - r["steps_done"] * step)
    return r, step, outside, MEDIUM_STEPS * step + (MEDIUM_EVALS + 3) / 4 * outside


def medium_seconds(work: str | Path) -> float:
    """One ptb_medium seed's estimated wall time (scripts/gpu_check.sh decides from it whether to run it)."""
    probe = medium_probe(Path(work))
    if probe is None:
        raise ValueError(f"{work}: no ptb_medium probe record")
    return probe[3]


def medium_estimate(work: Path) -> list[str]:
    probe = medium_probe(work)
    if probe is None:
        return ["No `ptb_medium` probe record: no estimate."]
    r, step, outside, total = probe
    return [
        f"Probe: {r['steps_done']} steps at {1e3 * step:.2f} ms a step, {outside:.0f} s outside training. "
        f"Estimated wall time of one `ptb_medium` seed: {total / 60:.1f} min ({MEDIUM_STEPS} steps x the step, "
        f"plus {MEDIUM_EVALS} validations and the final metrics at a quarter of that outside time each)."
    ]


def first_reach(history: Sequence[dict[str, Any]], threshold: float) -> Optional[int]:
    """The first evaluated step whose validation accuracy reaches threshold (None: never)."""
    for row in history:
        v = row.get("val_accuracy")
        if v not in (None, "") and float(v) >= threshold:
            return int(row["step"])
    return None


def km_median(times: np.ndarray, reached: np.ndarray) -> Optional[float]:
    """The Kaplan-Meier median steps to the threshold (None where fewer than half got there)."""
    km = survival.kaplan_meier(times, reached)
    below = np.nonzero(km.survival <= 0.5)[0]
    return float(km.times[below[0]]) if below.size else None


def pmnist_rows(rs: Sequence[dict[str, Any]], threshold: float) -> tuple[list[str], Optional[float], Optional[bool]]:
    """Per arm: how many seeds reached `threshold`, the KM median steps; the log-rank p of bn vs none (by
    permutation, benchmark/analysis/survival.py) and whether BN got there sooner (restricted mean time to the
    threshold, over the common budget); no p and no word where no seed of either arm got there."""
    arms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for arm in ("none", "bn"):
        mine = [r for r in rs if r["reg"] == arm and r["status"] == "ok"]
        t = [first_reach(r["history"], threshold) for r in mine]
        arms[arm] = (
            np.array([x if x is not None else r["steps_done"] for x, r in zip(t, mine)], float),
            np.array([x is not None for x in t], bool),
        )
    lines = []
    for arm, (t, hit) in arms.items():
        med = km_median(t, hit) if hit.any() else None
        lines.append(f"| {threshold:.0%} | {arm} | {int(hit.sum())} of {len(t)} | {_f(med)} |")
    (tb, rb), (tn, rn) = arms["bn"], arms["none"]
    if len(tb) < 2 or len(tn) < 2:
        return lines, None, None
    if not (rb.any() or rn.any()):
        return lines, None, None
    tau = float(max(tb.max(), tn.max()))
    p = survival.logrank_p(tb, rb, tn, rn, np.random.default_rng(0))  # by permutation of the arm labels
    return lines, p, survival.arm_time(tb, rb, tau).value < survival.arm_time(tn, rn, tau).value


def pmnist_section(work: Path, out: Path) -> list[str]:
    rs = records(work / "pmnist_control")
    if not rs:
        return ["No pMNIST control record (the part did not run or did not finish)."]
    write_curves(rs, out / "pmnist_curves.csv")
    lines = ["| accuracy | arm | seeds that reached it | KM median steps |", "| --- | --- | --- | --- |"]
    verdicts = []
    for thr in THRESHOLDS:
        rows, p, sooner = pmnist_rows(rs, thr)
        lines += rows
        word = (
            "no seed of either arm got there"
            if sooner is None
            else ("BN-LSTM sooner" if sooner else "BN-LSTM not sooner")
        )
        verdicts.append(f"{thr:.0%}: log-rank p = {_f(p)}, {word}")
    lines.append("\n" + "; ".join(verdicts) + ". Cooijmans et al.: BN-LSTM sooner (and higher: 0.902 -> 0.954).")
    for arm in ("none", "bn"):
        mine = [r for r in rs if r["reg"] == arm]
        step = cohort_step_s(mine)
        if step:
            lines.append(
                f"- {arm}: {len(mine)} seeds as one stack, {1e3 * step:.1f} ms a cohort step, "
                f"{mine[0].get('steps_done')} steps; the {PMNIST_RECIPE_STEPS // 1000}k-step recipe's steps alone: "
                f"{PMNIST_RECIPE_STEPS * step / 3600:.2f} h (evaluations besides)"
            )
    return lines


def write_curves(rs: Sequence[dict[str, Any]], path: Path) -> None:
    """Validation accuracy against steps, one row per seed and evaluation (the curves of the note)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seed", "step", "val_accuracy"])
        for r in rs:
            for row in r["history"]:
                if row.get("val_accuracy") not in (None, ""):
                    w.writerow([r["reg"], r["seed"], row["step"], row["val_accuracy"]])


def bench_section(out: Path) -> list[str]:
    lines = []
    for prec in ("fp32", "bf16"):
        f = out / f"bench_{prec}.json"
        if not f.exists():
            lines.append(f"No `make bench-gpu` table in {prec}.")
            continue
        doc = json.loads(f.read_text())
        lines += [
            f"**{prec}** ({doc['env'].get('device_name')}):",
            "",
            "| cell | T | variant | fwd+bwd ratio | target | verdict |",
        ]
        lines.append("| --- " * 6 + "|")
        for r in doc["rows"]:
            if r.get("target") is not None:
                over = r["ratio_fwd_bwd"] / r["target"] if r.get("ratio_fwd_bwd") else None
                verdict = r["verdict"] + (f" (x{over:.2f} the target)" if over and over > 1 else "")
                ratio = _f(r.get("ratio_fwd_bwd"))
                lines.append(f"| {r['cell']} | {r['seq_len']} | {r['variant']} | {ratio} | {r['target']} | {verdict} |")
        lines.append("")
    return lines


def sweep_section(work: Path, parts: dict[str, list[str]]) -> list[str]:
    rs = records(work / "claims_gpu_probe") or records(work / "smoke")
    if not rs:
        return ["No scaled sweep record."]
    counts: dict[str, int] = {}
    for r in rs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    report = next(iter(sorted((work / "reports").glob("*/index.html"))), None)
    row = parts.get("sweep", ["", "", "?"])
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    where = report.relative_to(work) if report else "none"
    return [
        f"`make sweep` of `{rs[0]['sweep']}`: {len(rs)} runs ({statuses}), {row[2]} s wall from the first multirun "
        f"to the report; report: {where}."
    ]


def jobs_section(work: Path) -> list[str]:
    f = work / "estimate_rebuilt.json"
    if not f.exists():
        return ["No whole `claims_gpu` job measured: no rebuilt estimate."]
    doc = json.loads(f.read_text())
    lines = ["| regime | T | job | members | measured s | estimated s | factor |", "| --- " * 7 + "|"]
    for r in doc["measured"]:
        lines.append(
            f"| {r['regime']} | {r['seq_len']} | {r['cell']}-{r['reg']} | {r['members']} | {r['measured_s']:.1f} "
            f"| {r['estimated_s']:.1f} | {r['factor']:.2f} |"
        )
    lines.append(
        f"\n`{doc['experiment']}` on one GPU: estimated {doc['estimated_s'] / 60:.0f} min from cohort-step costs, "
        f"rebuilt from these measured jobs {doc['rebuilt_s'] / 60:.0f} min ({doc['jobs']} jobs)."
    )
    return lines


def note(work: Path, out: Path) -> str:
    parts = {r[0]: r for r in (line.split("\t") for line in _lines(work / "parts.tsv"))}
    env = (work / "gpu.txt").read_text() if (work / "gpu.txt").exists() else "(no environment recorded)\n"
    sections = [
        ("Parts", parts_table(work)),
        ("Device", ["```", env.rstrip(), "```"]),
        ("ptb_small (Zaremba et al. 2014, small, their recipe)", ptb_section(work, "ptb_small")),
        (
            "ptb_medium",
            medium_estimate(work) + ([""] + ptb_section(work, "ptb_medium") if records(work / "ptb_medium") else []),
        ),
        ("pMNIST control (Cooijmans et al. 2016): steps to a validation accuracy", pmnist_section(work, out)),
        ("make bench-gpu: custom loop vs cuDNN, forward + backward", bench_section(out)),
        ("Scaled claims_gpu sweep through make sweep", sweep_section(work, parts)),
        ("Whole claims_gpu jobs and the rebuilt estimate", jobs_section(work)),
    ]
    return "\n\n".join(f"## {title}\n\n" + "\n".join(body) for title, body in sections) + "\n"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _f(x: Any) -> str:
    if x is None or x == "":
        return "–"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "nan" if math.isnan(v) else f"{v:.4g}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    text = "# Device session: the closing note\n\n" + note(a.work, a.out)
    (a.out / "note.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
