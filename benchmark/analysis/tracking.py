"""Share a finished sweep with TensorBoard: `python -m benchmark.analysis.tracking results/<sweep>`.

A post-hoc export (`make export-tensorboard SWEEP=...`): nothing is logged while runs train,
so the results folder stays the one source of truth and any sweep, old or new, can be
exported. It needs the optional extra `pip install -e .[tracking]` (TensorBoard's own
event writer and protos; neither torch nor TensorFlow is imported). Without it the command
says which extra to install and exits 2.

For every run folder with a complete metrics.json (status ok, diverged or failed: nothing is
dropped; `status` is an hparam) it writes one TensorBoard run, named
`<task>-T<seq_len>/<cell>/<variant>/seed<seed>-<run_id>`:

- hparams (HParams dashboard): the variant and grid keys of metrics.json (cell, reg,
  placements, dropout p, impl, task, seq_len, seed, sizes, lr where recorded, precision,
  device, status);
- `final/<key>` scalars at the last training step: every numeric key of metrics.json
  (test accuracy and metric, scores where recorded, gradient norms, timings, ...), also the
  HParams table's metric columns;
- `history/<column>` scalars over training steps: every numeric column of history.csv
  (train loss, gradient norms, lr, tokens/s, validation loss/accuracy/metric, ...).

Folders without a complete metrics.json (running or killed) are listed and skipped. The
output folder (default `results/<sweep>/tensorboard`) is replaced on a re-export when this
tool made it (a marker file says so), and refused otherwise.

    tensorboard --logdir results/<sweep>/tensorboard
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from benchmark.core.io import read_metrics

EXTRA_HINT = "pip install -e .[tracking]"
MARKER = ".exported-by-rnn-ablation-bench"
# metrics.json keys that say what a run is (hparams); every other numeric key is a result.
HPARAM_KEYS = (
    "cell",
    "reg",
    "bn_placement",
    "dropout_placement",
    "dropout_p",
    "impl",
    "impl_used",
    "accel",
    "task",
    "seq_len",
    "seed",
    "hidden_size",
    "num_layers",
    "batch_size",
    "steps",
    "lr",
    "precision",
    "device",
    "status",
)
NOT_A_RESULT = set(HPARAM_KEYS) | {
    "schema_version",
    "complete",
    "total_len",
    "diverged_at_step",
    "steps_done",
    "target_score",
    "stop_at_target",
    "metric_baseline",
    "metric_perfect",
    "timing_batch_size",
}


class MissingExtra(ImportError):
    """The optional tracking packages are not installed."""


def _tensorboard() -> Any:
    """TensorBoard's writer and protos, imported lazily; MissingExtra names the extra to install."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as e:
        raise MissingExtra(
            f"exporting to TensorBoard needs the optional `tracking` extra: {EXTRA_HINT} ({type(e).__name__}: {e})"
        ) from None
    return argparse.Namespace(Event=Event, Summary=Summary, hp=hp, EventFileWriter=EventFileWriter)


def _number(v: Any) -> Optional[float]:
    """A finite float, or None for text, booleans, empty cells and non-finite values."""
    if isinstance(v, bool) or v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def hparams(m: Mapping[str, Any]) -> dict[str, Any]:
    """The run's hparams: strings, numbers or booleans; null values become the string 'null'."""
    out: dict[str, Any] = {}
    for k in HPARAM_KEYS:
        if k in m:
            v = m[k]
            out[k] = "null" if v is None else v if isinstance(v, (str, bool, int, float)) else str(v)
    return out


def final_scalars(m: Mapping[str, Any]) -> dict[str, float]:
    """`final/<key>` -> value for every numeric result key of metrics.json."""
    return {f"final/{k}": x for k, v in m.items() if k not in NOT_A_RESULT and (x := _number(v)) is not None}


def history_scalars(path: Path) -> Iterator[tuple[int, str, float]]:
    """(step, `history/<column>`, value) for every numeric cell of history.csv."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = _number(row.get("step"))
            if step is None:
                continue
            for col, v in row.items():
                if col != "step" and (x := _number(v)) is not None:
                    yield int(step), f"history/{col}", x


def run_name(m: Mapping[str, Any], run_id: str) -> str:
    reg = str(m.get("reg"))
    placement = m.get("bn_placement") if reg == "bn" else m.get("dropout_placement") if reg == "dropout" else None
    variant = f"{reg}.{placement}" if placement else reg
    return f"{m.get('task')}-T{m.get('seq_len')}/{m.get('cell')}/{variant}/seed{m.get('seed')}-{run_id}"


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise FileExistsError(f"{out} exists and was not written by this export; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m benchmark.analysis.tracking; replaced on every export\n")


def export_tensorboard(sweep_dir: str | Path, out: Optional[str | Path] = None) -> tuple[list[str], list[str]]:
    """Write every complete run of the sweep as a TensorBoard run; returns (exported runs, skipped folders)."""
    tb = _tensorboard()
    sweep_dir = Path(sweep_dir)
    runs = sweep_dir / "runs"
    if not runs.is_dir():
        raise FileNotFoundError(f"{runs} not found: not a sweep folder")
    out = Path(out) if out is not None else sweep_dir / "tensorboard"
    _prepare_out(out)
    done, skipped, metric_tags, values = [], [], set(), {}
    for folder in sorted(d for d in runs.iterdir() if d.is_dir()):
        m = read_metrics(folder)
        if not m or m.get("complete") is not True:
            skipped.append(folder.name)
            continue
        name = run_name(m, folder.name)
        hp = hparams(m)
        final = final_scalars(m)
        metric_tags |= set(final)
        for k, v in hp.items():
            values.setdefault(k, set()).add(v)
        writer = tb.EventFileWriter(str(out / name))
        now = time.time()
        writer.add_event(tb.Event(wall_time=now, step=0, summary=tb.hp.hparams_pb(hp, trial_id=name)))
        for step, tag, x in history_scalars(folder / "history.csv"):
            writer.add_event(tb.Event(wall_time=now, step=step, summary=_scalar(tb, tag, x)))
        last = int(_number(m.get("steps_done")) or 0)
        for tag, x in final.items():
            writer.add_event(tb.Event(wall_time=now, step=last, summary=_scalar(tb, tag, x)))
        writer.close()
        done.append(name)
    writer = tb.EventFileWriter(str(out))  # the experiment: which hparams and metrics the dashboard shows
    config = tb.hp.hparams_config_pb(
        hparams=[
            tb.hp.HParam(k, tb.hp.Discrete(sorted(v, key=str)))
            for k, v in sorted(values.items())
            if len({type(x) for x in v}) == 1
        ],
        metrics=[tb.hp.Metric(tag) for tag in sorted(metric_tags)],
    )
    writer.add_event(tb.Event(wall_time=time.time(), step=0, summary=config))
    writer.close()
    return done, skipped


def _scalar(tb: Any, tag: str, x: float) -> Any:
    return tb.Summary(value=[tb.Summary.Value(tag=tag, simple_value=x)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmark.analysis.tracking", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="results/<sweep>")
    ap.add_argument("--out", type=Path, default=None, help="TensorBoard logdir (default: <sweep_dir>/tensorboard)")
    args = ap.parse_args(argv)
    try:
        done, skipped = export_tensorboard(args.sweep_dir, args.out)
    except (MissingExtra, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir / "tensorboard"
    if skipped:
        print(
            f"skipped {len(skipped)} run folder(s) without a complete metrics.json (running or killed): "
            f"{', '.join(skipped)}"
        )
    print(f"exported {len(done)} run(s) to {out}; view with: tensorboard --logdir {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
