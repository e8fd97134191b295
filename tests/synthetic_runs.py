"""Synthetic run folders, exactly as `benchmark.run` writes them (the run record,
`benchmark/core/record.py`, is the one definition of their keys), for the aggregation, report
and statistics tests and the analysis benchmark: known effects in, known verdicts out."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import yaml

from benchmark.core import record

# metric name, trivial predictor's value, perfect value, higher is better (as each task declares it)
METRIC = {
    "adding": ("mse", 1 / 6, 0.0, False),
    "digits": ("error", 0.9, 0.0, False),
    "chars": ("bpc", 4.4, 0.0, False),
    "copy": ("cross_entropy", 0.3, 0.0, False),
    "sign_nll": ("nll", math.log(2), 0.0, False),
    "agree": ("agreement", 0.5, 1.0, True),
}
IMPL_USED = {"none": "native", "bn": "custom", "dropout": "native", "both": "custom"}


def rid(**ident: Any) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def noise(*labels: Any) -> float:
    """A standard normal draw that is a pure function of the labels (same run -> same noise)."""
    return float(np.random.default_rng(zlib.crc32("/".join(map(str, labels)).encode())).standard_normal())


def _history(steps_done: int, score: float, every: int, uses_bn: bool, lr: float) -> list[dict[str, Any]]:
    rows = []
    for step in range(every, steps_done + 1, every):
        ev = step % (5 * every) == 0
        frac = step / max(steps_done, 1)
        rows.append(
            {
                "step": step,
                "train_loss": 1.0 / step,
                "grad_norm": 2.0 / math.sqrt(step),
                "clipped": 0.0,
                "lr": lr,
                "tokens_per_s": 1e4,
                "grad_norm_input": 0.1,
                "grad_norm_recurrent": 0.2,
                "grad_norm_norm": 0.05 if uses_bn else None,
                "grad_norm_head": 0.3,
                "val_loss": 0.5 / step if ev else None,
                "val_accuracy": score * frac if ev else None,
                "val_metric": 0.1 if ev else None,
                "val_score": score * frac if ev else None,
            }
        )
    return rows


def make_run(
    sweep_dir: Path,
    *,
    cell: str = "lstm",
    reg: str = "none",
    task: str = "adding",
    seq_len: int = 10,
    seed: int = 0,
    impl: str = "auto",
    lr: float = 0.01,
    test_score: Optional[float] = 0.5,
    val_score: Optional[float] = None,
    gap: float = 0.05,
    grad_decay: float = 0.5,
    status: str = "ok",
    sweep: Optional[str] = None,
    steps: int = 20,
    log_every: int = 2,
    fwd_bwd_ms: float = 1.0,
    error: Optional[str] = None,
    **overrides: Any,
) -> Path:
    """One complete run folder (config.yaml, history.csv, metrics.json) with every key of the run record.

    Scores set the metric through the task's declared direction (`METRIC`); `overrides` replace
    record keys (an unknown key is an error: the record is the contract).
    """
    unknown = set(overrides) - set(record.KEYS)
    if unknown:
        raise KeyError(f"not keys of the run record: {sorted(unknown)}")
    sweep = sweep or sweep_dir.name
    impl_used = IMPL_USED.get(reg, "custom") if impl == "auto" else impl
    run_id = rid(
        cell=cell,
        reg=reg,
        task=task,
        seq_len=seq_len,
        seed=seed,
        impl=impl,
        lr=lr,
        **({"dropout_p": overrides["dropout_p"]} if overrides.get("dropout_p") is not None else {}),
    )
    out = sweep_dir / "runs" / run_id
    out.mkdir(parents=True)
    name, baseline, perfect, higher = METRIC[task]
    metric_of = lambda sc: None if sc is None else baseline + sc * (perfect - baseline)  # noqa: E731
    uses_bn, uses_do = reg in ("bn", "both"), reg in ("dropout", "both")
    cfg = {
        "cell": {"name": cell, "_target_": f"benchmark.models.cells.{cell.upper()}Cell"},
        "reg": {"name": reg, "bn": {"placement": "recurrent"}, "dropout": {"placement": "output", "p": 0.25}},
        "task": {"name": task, "seq_len": seq_len, "data_seed": 0},
        "train": {"steps": steps, "lr": lr},
        "seed": seed,
        "impl": impl,
        "hidden_size": 8,
        "sweep": sweep,
        "results_dir": str(sweep_dir.parent),
    }
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    diverged_at = overrides.pop("diverged_at_step", steps // 2 if status == "diverged" else None)
    steps_done = diverged_at if status == "diverged" else (0 if status == "failed" else steps)
    ok = status != "failed"
    sc = test_score if ok else None
    val = (test_score if val_score is None else val_score) if ok else None
    acc = None if sc is None else min(1.0, max(0.0, sc))
    history = _history(steps_done or 0, sc or 0.0, log_every, uses_bn, lr)
    with open(out / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, record.HISTORY_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in history)
    profile = [grad_decay ** (seq_len - t) for t in range(1, seq_len + 1)]  # vanishing towards t=1
    tr = None if sc is None else sc + gap
    m: dict[str, Any] = dict.fromkeys(record.KEYS)
    m.update(
        {
            "schema_version": record.SCHEMA_VERSION,
            "complete": True,
            "status": status,
            "diverged_at_step": diverged_at,
            "error": error
            if error is not None
            else ("RuntimeError: synthetic failure" if status == "failed" else None),
            "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: synthetic failure"
            if status == "failed"
            else None,
            "run_id": run_id,
            "sweep": sweep,
            "cell": cell,
            "reg": reg,
            "bn_placement": "recurrent" if uses_bn else None,
            "dropout_placement": "output" if uses_do else None,
            "dropout_p": 0.25 if uses_do else None,
            "impl": impl,
            "impl_used": impl_used,
            "accel": "none",
            "task": task,
            "seq_len": seq_len,
            "total_len": seq_len,
            "seed": seed,
            "hidden_size": 8,
            "num_layers": 1,
            "batch_size": 16,
            "steps": steps,
            "lr": lr,
            "steps_done": steps_done,
            "stopped_early": False,
            "device": "cpu",
            "precision": "fp32",
            "metric_name": name,
            "metric_baseline": baseline,
            "metric_perfect": perfect,
            "metric_higher_is_better": higher,
            "target_score": 0.9,
            "stop_at_target": False,
            "test_accuracy": acc,
            "test_metric": metric_of(sc),
            "test_loss": metric_of(sc),
            "test_score": sc,
            "train_accuracy": None if tr is None else min(1.0, tr),
            "train_loss": metric_of(tr),
            "train_metric": metric_of(tr),
            "train_score": tr,
            "val_score": val,
            "generalization_gap": None if tr is None else min(1.0, tr) - acc,
            "best_val_accuracy": acc,
            "best_val_score": val,
            "val_score_auc": None if val is None else 0.6 * val,
            "steps_to_target": 10 if ok and (sc or 0) > 0.6 else None,
            "grad_norm_mean": 1.0,
            "grad_norm_max": 2.0,
            "grad_norm_std": 0.3,
            "clipped_fraction": 0.1,
            "grad_norm_input": 0.1,
            "grad_norm_recurrent": 0.2,
            "grad_norm_norm": 0.05 if uses_bn else None,
            "grad_norm_head": 0.3,
            "hidden_grad_profile_start": profile if ok else None,
            "hidden_grad_profile_end": profile if ok else None,
            **{  # BN arms probe the gain inits once per job: here, on seed 0
                record.init_gain_key(g): [v * g for v in profile] if ok and uses_bn and seed == 0 else None
                for g in record.INIT_GAINS
            },
            "hidden_grad_ratio_start": profile[0] / profile[-1] if ok else None,
            "hidden_grad_ratio_end": profile[0] / profile[-1] if ok else None,
            "train_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 1000) if ok else None,
            "fwd_ms": fwd_bwd_ms / 3 if ok else None,
            "fwd_bwd_ms": fwd_bwd_ms if ok else None,
            "fwd_ms_iqr": 0.01,
            "fwd_bwd_ms_iqr": 0.02,
            "fwd_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 3000) if ok else None,
            "fwd_bwd_tokens_per_s": 16 * seq_len / (fwd_bwd_ms / 1000) if ok else None,
            "timing_method": "perf_counter",
            "timing_batch_size": 16,
            "peak_memory_mb": 1.5,
            "peak_memory_kind": "rss_hwm_delta",
            "compile_s": None,
            "env": {
                "device": "cpu",
                "device_name": "x86_64",
                "torch": "2.13.0+cpu",
                "cuda": None,
                "cudnn": None,
                "threads": 1,
                "git_rev": "abc123",
                "hostname": "testhost",
                "python": "3.11.7",
                "platform": "Linux",
                "start_time": "2026-01-01T00:00:00+00:00",
                "tf32": False,
                "precision": "fp32",
                "wall_s": 0.5,
            },
            "wall_s": 0.5,
        }
    )
    m.update(overrides)
    assert set(m) == set(record.KEYS)
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    return out


# Known effects on the test score (in score units) and how runs differ between seeds.
EFFECT = {"none": 0.0, "bn": 0.2, "dropout": -0.2, "both": 0.0}  # bn helps, dropout hurts, both no effect
GAP = {"none": 0.08, "bn": 0.08, "dropout": 0.01, "both": 0.02}  # dropout curbs overfitting
DECAY = {"none": 0.5, "bn": 0.7, "dropout": 0.5, "both": 0.7}  # bn eases vanishing gradients
SEED_SD, RUN_SD = 0.05, 0.02  # a seed's shared offset (pairing removes it) and each run's own noise


def make_sweep(
    root: Path,
    name: str = "syn",
    *,
    cells: Iterable[str] = ("rnn", "lstm", "gru"),
    regs: Iterable[str] = ("none", "bn", "dropout", "both"),
    tasks: Iterable[str] = ("adding", "digits"),
    lens: Iterable[int] = (5, 10),
    seeds: Iterable[int] = (0, 1, 2, 3, 4, 5),
    impls: Iterable[str] = ("auto",),
    lrs: Iterable[float] = (0.01,),
    effect: Mapping[str, float] = EFFECT,
    run_sd: float = RUN_SD,
    steps: int = 20,
    log_every: int = 2,
    multirun_yaml: bool = True,
) -> Path:
    """A full grid with known effects (default: bn helps, dropout hurts, both no effect)."""
    sweep_dir = root / name
    cost = {"none": 1.0, "bn": 1.5, "dropout": 1.1, "both": 1.6}
    cells, regs, seeds, lrs = list(cells), list(regs), list(seeds), list(lrs)
    for task in tasks:
        for T in lens:
            for cell in cells:
                for reg in regs:
                    for s in seeds:
                        for lr in lrs:
                            for impl in impls:
                                sc = (
                                    0.5
                                    + SEED_SD * noise("seed", task, T, cell, s)
                                    + effect.get(reg, 0.0)
                                    + run_sd * noise(task, T, cell, reg, s, lr)
                                )
                                used = IMPL_USED.get(reg, "custom") if impl == "auto" else impl
                                ms = cost.get(reg, 1.0) * T * (2.0 if used == "custom" else 1.0)
                                make_run(
                                    sweep_dir,
                                    cell=cell,
                                    reg=reg,
                                    task=task,
                                    seq_len=T,
                                    seed=s,
                                    impl=impl,
                                    lr=lr,
                                    test_score=sc,
                                    gap=GAP.get(reg, 0.05),
                                    grad_decay=DECAY.get(reg, 0.5),
                                    fwd_bwd_ms=ms,
                                    sweep=name,
                                    steps=steps,
                                    log_every=log_every,
                                )
    if multirun_yaml:
        (sweep_dir / "hydra").mkdir(parents=True, exist_ok=True)
        (sweep_dir / "hydra" / "multirun.yaml").write_text(
            yaml.safe_dump(
                {
                    "hydra": {
                        "overrides": {
                            "hydra": ["hydra.mode=MULTIRUN"],
                            "task": ["+experiment=smoke", f"results_dir={root}"],
                        },
                        "sweeper": {
                            "params": {
                                "cell": ",".join(cells),
                                "reg": ",".join(regs),
                                "seed": ",".join(map(str, seeds)),
                            }
                        },
                    },
                    "seed": 0,
                }
            )
        )
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
            self.verdict_rows.append(
                {"task": a["data-task"], "seq_len": int(a["data-seq-len"]), "cell": a["data-cell"], "verdicts": {}}
            )
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
