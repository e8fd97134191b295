"""Post-hoc export of a sweep to TensorBoard (benchmark/analysis/tracking.py), an optional extra.

Written with TensorBoard's own event writer and read back with its own event reader: hparams,
final scalars and every history column of every complete run; nothing dropped, nothing required.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.analysis import tracking

from synthetic_runs import make_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "results" / "syn"
    make_run(s, cell="lstm", reg="bn", seed=0, test_accuracy=0.75)
    make_run(s, cell="gru", reg="dropout", seed=1, test_accuracy=0.5)
    make_run(s, cell="rnn", reg="none", seed=0, test_accuracy=None, status="failed", error="RuntimeError: boom")
    (s / "runs" / "killedrun0001").mkdir()  # a killed run: config only
    (s / "runs" / "killedrun0001" / "config.yaml").write_text("cell: {name: lstm}\n")
    return s


def read(run_dir: Path):
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    acc = pea.EventAccumulator(str(run_dir))
    acc.Reload()
    scalars = {
        tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if not tag.startswith("_hparams_")
    }
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    return scalars, content


def test_every_complete_run_is_exported_with_hparams_and_scalars(sweep):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import metadata

    done, skipped = tracking.export_tensorboard(sweep)
    out = sweep / "tensorboard"
    assert skipped == ["killedrun0001"]
    assert len(done) == 3 and any("/rnn/none/" in d for d in done)  # the failed run too, with its status
    for folder in (d for d in (sweep / "runs").iterdir() if (d / "metrics.json").exists()):
        m = json.loads((folder / "metrics.json").read_text())
        name = next(d for d in done if d.endswith(folder.name))
        assert (
            name
            == f"adding-T10/{m['cell']}/"
            + {"bn": "bn.recurrent", "dropout": "dropout.output", "none": "none"}[m["reg"]]
            + f"/seed{m['seed']}-{folder.name}"
        )
        scalars, content = read(out / name)
        info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        hp = {k: (v.string_value or v.number_value or v.bool_value) for k, v in info.hparams.items()}
        assert hp["cell"] == m["cell"] and hp["reg"] == m["reg"] and hp["status"] == m["status"]
        assert hp["seed"] == m["seed"] and hp["seq_len"] == m["seq_len"]
        if m["test_accuracy"] is None:
            assert "final/test_accuracy" not in scalars
        else:
            assert scalars["final/test_accuracy"] == [(m["steps_done"], pytest.approx(m["test_accuracy"]))]
        rows = list(csv.DictReader((folder / "history.csv").open()))
        for col in ("train_loss", "grad_norm", "val_accuracy"):
            expected = [(int(r["step"]), pytest.approx(float(r[col]))) for r in rows if r[col] != ""]
            assert scalars.get(f"history/{col}", []) == expected, col
        assert rows or m["status"] == "failed"
    _, content = read(out)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert {"cell", "reg", "seed", "status"} <= {h.name for h in experiment.hparam_infos}
    assert "final/test_accuracy" in {m.name.tag for m in experiment.metric_infos}


def test_reexport_replaces_its_own_folder_and_refuses_a_foreign_one(sweep, tmp_path):
    pytest.importorskip("tensorboard")
    tracking.export_tensorboard(sweep)
    n = len(list((sweep / "tensorboard").rglob("events.out.tfevents.*")))
    tracking.export_tensorboard(sweep)
    assert len(list((sweep / "tensorboard").rglob("events.out.tfevents.*"))) == n  # replaced, not duplicated
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by this export"):
        tracking.export_tensorboard(sweep, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_without_the_extra_a_clear_error_names_it(sweep, monkeypatch):
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(tracking.MissingExtra, match=r"pip install -e \.\[tracking\]"):
        tracking.export_tensorboard(sweep)
    assert not (sweep / "tensorboard").exists()
    assert tracking.main([str(sweep)]) == 2


def test_make_export_tensorboard(sweep):
    pytest.importorskip("tensorboard")
    p = subprocess.run(
        ["make", "export-tensorboard", f"RESULTS_DIR={sweep.parent}", "SWEEP=syn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert f"exported 3 run(s) to {sweep}/tensorboard" in p.stdout and "killedrun0001" in p.stdout


def test_the_export_imports_neither_torch_nor_tensorflow(sweep):
    pytest.importorskip("tensorboard")
    code = (
        f"import sys; from benchmark.analysis import tracking; tracking.export_tensorboard({str(sweep)!r}); "
        "print('torch' in sys.modules, 'tensorflow' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False"]
