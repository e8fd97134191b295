"""The report is written whatever the results folder holds: a property test over randomly damaged sweeps.

A synthetic sweep (tests/synthetic_runs.py; nothing trains) of BLOCKS independent blocks — the comparison
points, length x cell, each every variant x 2 seeds, n = 8 records — is damaged block by block: in each, k
of its n records (k drawn from 1..n) are dropped, torn, failed, left without scores, duplicated, killed or
diverged (each record its own kind). Every damaged sweep goes through `aggregate` and the report; every
time, the report must be written whole (its nine sections, its tables), name every damaged folder that is
still on disk, and keep every undamaged run. One report holds BLOCKS damages, so ROUNDS reports try
ROUNDS x BLOCKS = 210 of them, each seed a reproducible case (`DAMAGE_SEED=<n>` in the failure message).
The figures are drawn (their data and axes built) but neither laid out nor rasterised, except in the last
round. One task: a report's cost is mostly its figures, a few per task, so blocks of one task make damages
cheap; a report also has a fixed cost, so 7 reports of 30 blocks cost less than 14 of 15 (measured on one
core: about 3 CPU-s a report of 240 records, 2 CPU-s one of 120).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from matplotlib.figure import Figure

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.analysis import aggregate, plots, report

from synthetic_runs import make_sweep, parse_report

CELLS, LENGTHS = ("rnn", "lstm", "gru"), tuple(range(4, 24, 2))
BLOCKS, ROUNDS = len(CELLS) * len(LENGTHS), 7  # 210 damages
KINDS = ("drop", "torn", "not_json_object", "torn_history", "no_history", "failed", "no_score", "copy", "copy_renamed")
KINDS += ("killed", "diverged", "torn_config")
SECTIONS = ["1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9."]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    return make_sweep(root, "dmg", cells=CELLS, tasks=("adding",), lens=LENGTHS, seeds=(0, 1), log_every=5)


def damage(folder: Path, kind: str, rng: random.Random) -> Path | None:
    """Damage one run folder as `kind`; the folder the report must name, or None (nothing left to name)."""
    m = folder / "metrics.json"
    if kind == "drop":
        shutil.rmtree(folder)
        return None
    if kind == "torn":
        m.write_text(m.read_text()[: rng.randrange(1, 200)])
    elif kind == "not_json_object":
        m.write_text("[1, 2]")
    elif kind == "torn_history":
        (folder / "history.csv").write_bytes(b"\xff\xfe\x00step,loss\n\x01")
    elif kind == "no_history":
        (folder / "history.csv").unlink()
    elif kind == "killed":
        m.unlink()
    elif kind == "torn_config":
        (folder / "config.yaml").write_text(": : [")
        m.unlink()  # a killed run whose config is torn too: the row has no identity at all
    elif kind in ("copy", "copy_renamed"):
        copy = shutil.copytree(folder, folder.parent / f"{rng.getrandbits(48):012x}")
        if kind == "copy_renamed":  # its record edited to match: a second record of one training
            r = json.loads((copy / "metrics.json").read_text())
            (copy / "metrics.json").write_text(json.dumps({**r, "run_id": copy.name}))
        return copy
    else:
        r = json.loads(m.read_text())
        if kind == "failed":
            r |= {
                "status": "failed",
                "error": "RuntimeError: damaged",
                "traceback": "Traceback ...",
                "test_score": None,
            }
        elif kind == "no_score":
            r |= dict.fromkeys(("test_score", "val_score", "train_score", "test_accuracy", "steps_to_target"))
        elif kind == "diverged":
            r |= {"status": "diverged", "diverged_at_step": 3, "test_score": None, "val_score": None}
        m.write_text(json.dumps(r))
    return folder


def damaged_sweep(pristine: Path, root: Path, seed: int) -> tuple[Path, list[Path], list[Path]]:
    """A copy of the pristine sweep with every block damaged: (sweep, folders to name, folders untouched)."""
    rng = random.Random(seed)
    sweep = shutil.copytree(pristine, root / f"s{seed}" / pristine.name)
    blocks: dict[tuple, list[Path]] = {}
    for f in sorted((sweep / "runs").iterdir()):
        m = json.loads((f / "metrics.json").read_text())
        blocks.setdefault((m["seq_len"], m["cell"]), []).append(f)
    assert len(blocks) == BLOCKS
    named, untouched = [], []
    for runs in blocks.values():
        k = rng.randint(1, len(runs))  # k of n records, k up to n
        hit = rng.sample(runs, k)
        untouched += [f for f in runs if f not in hit]
        named += [x for f in hit if (x := damage(f, rng.choice(KINDS), rng)) is not None]
    return sweep, named, untouched


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_a_randomly_damaged_sweep_gets_its_whole_report(pristine, tmp_path, seed, monkeypatch, capsys):
    if seed < ROUNDS - 1:  # draw every figure, lay out and rasterise one round's (damage reaches the figures' data)
        monkeypatch.setattr(plots, "to_data_uri", lambda fig: "data:image/png;base64,")
        monkeypatch.setattr(Figure, "tight_layout", lambda fig, *a, **kw: None)
    sweep, named, untouched = damaged_sweep(pristine, tmp_path, seed)
    case = f"DAMAGE_SEED={seed}"
    rc = report.main([str(sweep), "--aggregate", "--out", str(tmp_path / "report"), "--n-boot", "50"])
    out = capsys.readouterr()
    if not any((sweep / "runs").iterdir()):  # every record dropped: an error naming the folder, nothing written
        assert rc == 2 and str(sweep) in out.err and not (tmp_path / "report").exists(), case
        return
    summary = aggregate.load(sweep).summary
    corrupt_or_copy = summary["status"].isin(["corrupt", "duplicate"]).any()
    assert rc == (1 if corrupt_or_copy else 0), (case, out.err[-2000:])
    assert out.out.strip().splitlines()[-1] == f"report: {(tmp_path / 'report' / 'index.html').resolve()}", case
    html = (tmp_path / "report" / "index.html").read_text()
    p = parse_report(html)
    assert [h.split()[0] for h in p.h2] == SECTIONS, (case, p.h2)
    for name in ("verdicts", "claims", "aggregates", "seeds"):
        assert (tmp_path / "report" / f"{name}.csv").exists(), (case, name)
    missing = [str(f) for f in named if str(f) not in html]
    assert not missing, (case, missing)  # every damaged folder still on disk is a row with its path
    rows = summary.set_index("path")["status"]
    assert all(rows[str(f)] == "ok" for f in untouched), case  # nothing undamaged is lost
    assert len(summary) == len(list((sweep / "runs").iterdir())), case  # one row per folder, none dropped
