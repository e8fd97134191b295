"""Synthetic run folders, exactly as `benchmark.run` writes them (README "One grid point"), for the
aggregation and report tests: known effects in, known verdicts out, in milliseconds."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

HISTORY_COLUMNS = ["step", "train_loss", "grad_norm", "clipped", "lr", "tokens_per_s", "grad_norm_input",
                   "grad_norm_recurrent", "grad_norm_norm", "grad_norm_head", "val_loss", "val_accuracy",
                   "val_metric"]
METRIC = {"adding": ("mse", 0.1667), "digits": ("error", 0.9), "copy": ("cross_entropy", 0.3)}
IMPL_USED = {"none": "native", "bn": "custom", "dropout": "native", "both": "custom"}


def rid(**ident: Any) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def make_run(sweep_dir: Path, *, cell: str = "lstm", reg: str = "none", task: str = "adding", seq_len: int = 10,
             seed: int = 0, impl: str = "auto", test_accuracy: Optional[float] = 0.5, status: str = "ok",
             sweep: Optional[str] = None, steps: int = 20, fwd_bwd_ms: float = 1.0, error: Optional[str] = None,
             **overrides: Any) -> Path:
    """One complete run folder (config.yaml, history.csv, metrics.json) with every contract key."""
    sweep = sweep or sweep_dir.name
    impl_used = IMPL_USED[reg] if impl == "auto" else impl
    run_id = rid(cell=cell, reg=reg, task=task, seq_len=seq_len, seed=seed, impl=impl)
    out = sweep_dir / "runs" / run_id
    out.mkdir(parents=True)
    metric_name, baseline = METRIC[task]
    acc = test_accuracy
    metric = None if acc is None else (1 - acc if metric_name == "error" else 0.2 * (1 - acc))
    uses_bn, uses_do = reg in ("bn", "both"), reg in ("dropout", "both")
    cfg = {"cell": {"name": cell, "_target_": f"benchmark.models.cells.{cell.upper()}Cell"},
           "reg": {"name": reg, "bn": {"placement": "recurrent"}, "dropout": {"placement": "output", "p": 0.25}},
           "task": {"name": task, "seq_len": seq_len, "data_seed": 0}, "train": {"steps": steps},
           "seed": seed, "impl": impl, "hidden_size": 8, "sweep": sweep, "results_dir": str(sweep_dir.parent)}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    diverged_at = overrides.pop("diverged_at_step", steps // 2 if status == "diverged" else None)
    steps_done = diverged_at if status == "diverged" else (0 if status == "failed" else steps)
    history = []
    for step in range(2, (steps_done or 0) + 1, 2):
        ev = step % 10 == 0
        history.append({"step": step, "train_loss": 1.0 / step, "grad_norm": 2.0 / math.sqrt(step), "clipped": 0.0,
                        "lr": 0.01, "tokens_per_s": 1e4, "grad_norm_input": 0.1, "grad_norm_recurrent": 0.2,
                        "grad_norm_norm": 0.05 if uses_bn else None, "grad_norm_head": 0.3,
                        "val_loss": 0.5 / step if ev else None, "val_accuracy": (acc or 0) * step / steps if ev
                        else None, "val_metric": 0.1 if ev else None})
    with open(out / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, HISTORY_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in history)
    ok = status != "failed"
    profile = [0.5 ** (seq_len - t) for t in range(1, seq_len + 1)]  # vanishing towards t=1
    m: dict[str, Any] = {
        "schema_version": 1, "complete": True, "status": status, "diverged_at_step": diverged_at,
        "error": error if error is not None else ("RuntimeError: synthetic failure" if status == "failed" else None),
        "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: synthetic failure"
        if status == "failed" else None,
        "run_id": run_id, "sweep": sweep, "cell": cell, "reg": reg,
        "bn_placement": "recurrent" if uses_bn else None, "dropout_placement": "output" if uses_do else None,
        "dropout_p": 0.25 if uses_do else None, "impl": impl, "impl_used": impl_used, "task": task,
        "seq_len": seq_len, "total_len": seq_len, "seed": seed, "hidden_size": 8, "num_layers": 1, "batch_size": 16,
        "steps": steps, "steps_done": steps_done, "stopped_early": False, "device": "cpu", "precision": "fp32",
        "test_accuracy": acc if ok else None, "test_metric": metric if ok else None, "metric_name": metric_name,
        "metric_baseline": baseline, "test_loss": metric if ok else None,
        "train_accuracy": (acc + 0.05) if ok and acc is not None else None, "train_loss": 0.1 if ok else None,
        "train_metric": 0.1 if ok else None,
        "generalization_gap": 0.05 if ok and acc is not None else None,
        "best_val_accuracy": acc if ok else None, "steps_to_target": 10 if ok and (acc or 0) > 0.6 else None,
        "target_accuracy": 0.9,
        "grad_norm_mean": 1.0, "grad_norm_max": 2.0, "grad_norm_std": 0.3, "clipped_fraction": 0.1,
        "grad_norm_input": 0.1, "grad_norm_recurrent": 0.2, "grad_norm_norm": 0.05 if uses_bn else None,
        "grad_norm_head": 0.3,
        "hidden_grad_profile_start": profile if ok else None, "hidden_grad_profile_end": profile if ok else None,
        "hidden_grad_ratio_start": profile[0] / profile[-1] if ok else None,
        "hidden_grad_ratio_end": profile[0] / profile[-1] if ok else None,
        "train_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 1000) if ok else None,
        "fwd_ms": fwd_bwd_ms / 3 if ok else None, "fwd_bwd_ms": fwd_bwd_ms if ok else None,
        "fwd_ms_iqr": 0.01, "fwd_bwd_ms_iqr": 0.02,
        "fwd_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 3000) if ok else None,
        "fwd_bwd_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 1000) if ok else None,
        "timing_method": "perf_counter", "timing_batch_size": 16, "peak_memory_mb": 1.5,
        "peak_memory_kind": "rss_hwm_delta", "compile_s": None,
        "env": {"device": "cpu", "device_name": "x86_64", "torch": "2.13.0+cpu", "cuda": None, "cudnn": None,
                "threads": 1, "git_rev": "abc123", "hostname": "testhost", "python": "3.11.7",
                "platform": "Linux", "start_time": "2026-01-01T00:00:00+00:00", "tf32": False, "precision": "fp32",
                "wall_s": 0.5},
        "wall_s": 0.5,
    }
    m.update(overrides)
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    return out


# Known effects on test accuracy (added to the baseline, the same for every seed) and per-seed noise.
EFFECT = {"none": 0.0, "bn": 0.2, "dropout": -0.2, "both": None}  # both: no clear effect (see below)
BOTH_NOISE = [0.03, -0.03, 0.01]  # paired differences of `both` vs none: the interval contains 0
SEED_NOISE = [0.0, 0.02, -0.01]


def make_sweep(root: Path, name: str = "syn", *, cells: Iterable[str] = ("rnn", "lstm", "gru"),
               regs: Iterable[str] = ("none", "bn", "dropout", "both"), tasks: Iterable[str] = ("adding", "digits"),
               lens: Iterable[int] = (5, 10), seeds: Iterable[int] = (0, 1, 2), impls: Iterable[str] = ("auto",),
               multirun_yaml: bool = True) -> Path:
    """A full grid with known verdicts: bn helps, dropout hurts, both no clear effect."""
    sweep_dir = root / name
    cost = {"none": 1.0, "bn": 1.5, "dropout": 1.1, "both": 1.6}
    for task in tasks:
        for T in lens:
            for cell in cells:
                for reg in regs:
                    for s in seeds:
                        for impl in impls:
                            eff = BOTH_NOISE[s % 3] if reg == "both" else EFFECT[reg]
                            acc = 0.5 + SEED_NOISE[s % 3] + eff
                            used = IMPL_USED[reg] if impl == "auto" else impl
                            ms = cost[reg] * T * (2.0 if used == "custom" else 1.0)
                            make_run(sweep_dir, cell=cell, reg=reg, task=task, seq_len=T, seed=s, impl=impl,
                                     test_accuracy=acc, fwd_bwd_ms=ms, sweep=name)
    if multirun_yaml:
        (sweep_dir / "hydra").mkdir(parents=True, exist_ok=True)
        (sweep_dir / "hydra" / "multirun.yaml").write_text(yaml.safe_dump({
            "hydra": {"overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": ["+experiment=smoke",
                                                                              f"results_dir={root}"]},
                      "sweeper": {"params": {"cell": ",".join(cells), "reg": ",".join(regs),
                                             "seed": ",".join(map(str, seeds))}}},
            "seed": 0}))
    return sweep_dir


# ----------------------------------------------------------------------------- reading the report back

from html.parser import HTMLParser  # noqa: E402


class ReportParser(HTMLParser):
    """What the tests check in index.html: section titles, table ids, images, external references,
    and the verdict table (one entry per row: task, seq_len, cell, {variant: verdict word})."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.table_ids: list[str] = []
        self.imgs: list[str] = []
        self.external: list[str] = []  # src/href that would need the network or another file
        self.scripts = 0
        self.verdict_rows: list[dict[str, Any]] = []
        self.verdict_headers: list[str] = []
        self._in_h2 = False
        self._text: list[str] = []
        self._variant: Optional[str] = None
        self._in_verdict_span = False
        self._in_verdicts = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        for k in ("src", "href"):
            v = a.get(k)
            if v is not None and not (v.startswith("data:") or v.startswith("#")):
                self.external.append(v)
        if tag in ("script", "link", "iframe", "object"):
            self.scripts += 1
        if tag == "h2":
            self._in_h2, self._text = True, []
        elif tag == "table" and a.get("id"):
            self.table_ids.append(a["id"])
            self._in_verdicts = a["id"] == "verdicts"
        elif tag == "img":
            self.imgs.append(a.get("src") or "")
        elif tag == "th" and self._in_verdicts and a.get("data-variant"):
            self.verdict_headers.append(a["data-variant"])
        elif tag == "tr" and "verdict-row" in (a.get("class") or ""):
            self.verdict_rows.append({"task": a["data-task"], "seq_len": int(a["data-seq-len"]),
                                      "cell": a["data-cell"], "verdicts": {}})
        elif tag == "td" and "effect" in (a.get("class") or "").split():
            self._variant = a.get("data-variant")
        elif tag == "span" and "verdict" in (a.get("class") or "").split() and self._variant:
            self._in_verdict_span, self._text = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._in_h2:
            self.h2.append(" ".join("".join(self._text).split()))
            self._in_h2 = False
        elif tag == "span" and self._in_verdict_span:
            self.verdict_rows[-1]["verdicts"][self._variant] = "".join(self._text).strip()
            self._in_verdict_span = False
        elif tag == "td":
            self._variant = None
        elif tag == "table":
            self._in_verdicts = False

    def handle_data(self, data: str) -> None:
        if self._in_h2 or self._in_verdict_span:
            self._text.append(data)


def parse_report(html: str) -> ReportParser:
    p = ReportParser()
    p.feed(html)
    p.close()
    return p
