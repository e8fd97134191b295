"""`make status` and the live progress of `make sweep` (benchmark/sweep/status.py, progress.py).

A real multirun (a slice of the smoke grid: lstm, seed 0, 8 points) is run once; the tests
then damage copies of it the way real sweeps get damaged — a point killed mid-run, a point
never started, a failed and a diverged point, a folder from another grid — and check that
every grid point lands in its category, matched to its folder by run id.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.sweep import history, progress, status
from benchmark.sweep.status import Category

from helpers import ENV, ROOT, as_terminal_job

pytestmark = pytest.mark.sweep  # every test here reads (a copy of) a real multirun: `make test-sweeps`
SLICE = ["cell=lstm", "seed=0"]  # the command line replaces the experiment's axes: 4 regs x 2 lengths
N = 8


def multirun(results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmark.run",
        "--multirun",
        "+experiment=smoke",
        f"results_dir={results}",
        *SLICE,
        *extra,
    ]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """results/smoke of a finished 8-point multirun (shared; tests copy it before changing it)."""
    results = tmp_path_factory.mktemp("status") / "results"
    p = subprocess.run(multirun(results), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return results / "smoke"


@pytest.fixture
def sweep(swept: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results" / "smoke"
    shutil.copytree(swept, copy)
    return copy


def test_grid_is_hydras_job_list_and_run_ids_match_the_folders(swept):
    points = status.grid(swept)
    assert [p.num for p in points] == list(range(N))
    for p in points:  # each job's overrides, as Hydra recorded them when it ran the job
        recorded = yaml.safe_load((swept / "hydra" / str(p.num) / ".hydra" / "overrides.yaml").read_text())
        assert list(p.overrides) == recorded
        assert dict(p.axes)["cell"] == "lstm" and dict(p.axes)["seed"] == "0"
    assert [k for k, _ in points[0].axes] == ["cell", "reg", "task.seq_len", "seed"]
    assert {p.run_id for p in points} == {d.name for d in (swept / "runs").iterdir()}


def test_recorded_run_ids_are_the_composed_ones_and_only_points_never_started_are_composed(sweep, monkeypatch):
    composed = status.grid(sweep)
    assert status.grid(sweep, recorded=True) == composed
    never = composed[3]
    shutil.rmtree(sweep / "runs" / never.run_id)
    asked = []
    real = status.composed_run_ids
    monkeypatch.setattr(status, "composed_run_ids", lambda mr, pts: asked.extend(pts) or real(mr, pts))
    miss = status.missing_points(sweep)  # the report's missing points read the recorded ids
    assert [p.overrides for p in asked] == [never.overrides] and list(miss["run_id"]) == [never.run_id]


def test_every_category_of_a_partly_done_sweep(sweep):
    points = {p.label: p for p in status.grid(sweep)}
    runs = sweep / "runs"
    killed = points["cell=lstm reg=bn task.seq_len=6 seed=0"].run_id
    (runs / killed / "metrics.json").unlink()  # killed mid-run: config.yaml and history, no metrics.json
    (runs / killed / ".metrics.json.abc.tmp").write_text("{")
    never = points["cell=lstm reg=both task.seq_len=10 seed=0"].run_id
    shutil.rmtree(runs / never)  # never started
    failed = points["cell=lstm reg=dropout task.seq_len=6 seed=0"].run_id
    diverged = points["cell=lstm reg=none task.seq_len=10 seed=0"].run_id
    for rid, change in (
        (failed, {"status": "failed", "error": "RuntimeError: out of memory"}),
        (diverged, {"status": "diverged", "diverged_at_step": 7}),
    ):
        m = json.loads((runs / rid / "metrics.json").read_text())
        (runs / rid / "metrics.json").write_text(json.dumps({**m, **change}))
    torn = points["cell=lstm reg=none task.seq_len=6 seed=0"].run_id
    m = json.loads((runs / torn / "metrics.json").read_text())
    (runs / torn / "metrics.json").write_text(json.dumps({**m, "complete": False}))
    corrupt = points["cell=lstm reg=bn task.seq_len=10 seed=0"].run_id
    (runs / corrupt / "metrics.json").write_text('{"complete": true, "sta')  # truncated by something else
    (runs / "0123456789ab").mkdir()  # a folder of another grid

    st = status.sweep_status(sweep)
    by_id = {s.point.run_id: s for s in st.points}
    assert by_id[killed].category is Category.incomplete
    assert by_id[torn].category is Category.incomplete
    assert by_id[never].category is Category.missing
    assert by_id[failed].category is Category.failed and by_id[failed].error == "RuntimeError: out of memory"
    assert by_id[diverged].category is Category.diverged
    assert by_id[corrupt].category is Category.corrupt and str(runs / corrupt / "metrics.json") in by_id[corrupt].error
    assert st.counts() == {
        Category.ok: 2,
        Category.diverged: 1,
        Category.failed: 1,
        Category.lost: 0,
        Category.incomplete: 2,
        Category.corrupt: 1,
        Category.missing: 1,
    }
    assert st.not_in_grid == ["0123456789ab"]

    missing = status.missing_points(sweep)
    assert list(missing.columns) == ["job", "run_id", "overrides", "cell", "reg", "task.seq_len", "seed"]
    assert missing.to_dict("records") == [
        {
            "job": points["cell=lstm reg=both task.seq_len=10 seed=0"].num,
            "run_id": never,
            "overrides": "cell=lstm reg=both task.seq_len=10 seed=0",
            "cell": "lstm",
            "reg": "both",
            "task.seq_len": "10",
            "seed": "0",
        }
    ]

    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    for r in status.render(st):
        console.print(r)
    out = buf.getvalue()
    counted = (("ok", 2), ("diverged", 1), ("failed", 1), ("incomplete or running", 2), ("corrupt", 1), ("missing", 1))
    for word, n in counted:
        assert re.search(rf"│ {re.escape(word)}\s+│\s+{n} │", out), (word, out)
    assert "RuntimeError: out of memory" in out and never in out and "not in this grid" in out
    assert "corrupt: 1" in out and "unreadable" in out  # the table of corrupt points, its file (folded) named


def test_points_of_a_lost_cluster_job_are_lost_until_the_next_launch(sweep):
    """The SLURM launcher's history names the points of a job that ended without a result: without a complete
    record they read `lost` (state, job, log), in `make status` and in the report's missing points."""
    points = {p.label: p for p in status.grid(sweep)}
    runs = sweep / "runs"
    killed, never, done = (points[f"cell=lstm reg={r} task.seq_len=6 seed=0"] for r in ("bn", "none", "dropout"))
    (runs / killed.run_id / "metrics.json").unlink()  # the job was killed mid-run
    shutil.rmtree(runs / never.run_id)  # and never reached this one
    keys = [list(history.point_key(p.overrides)) for p in (killed, never, done)]
    history.append(sweep, {"event": "launch", "jobs": 3, "array": "47"})
    history.append(
        sweep, {"event": "lost", "job": "47_1", "state": "CANCELLED", "log": "47_1_0_log.err", "points": keys}
    )

    st = status.sweep_status(sweep)
    by_id = {s.point.run_id: s for s in st.points}
    why = "CANCELLED, job 47_1, log 47_1_0_log.err"
    assert by_id[killed.run_id].category is Category.lost and by_id[killed.run_id].error == why
    assert by_id[never.run_id].category is Category.lost
    assert by_id[done.run_id].category is Category.ok  # its record is complete: the job lost nothing of it
    assert st.counts()[Category.lost] == 2 and st.counts()[Category.ok] == N - 2

    missing = status.missing_points(sweep)
    assert list(missing["lost"]) == [why, why] and set(missing["run_id"]) == {killed.run_id, never.run_id}
    buf = io.StringIO()
    for r in status.render(st):
        Console(file=buf, width=200, color_system=None).print(r)
    assert re.search(r"│ lost\s+│\s+2 │", buf.getvalue()) and why in buf.getvalue()

    history.append(sweep, {"event": "launch", "jobs": 3, "array": "48"})  # the same command again
    st = status.sweep_status(sweep)
    assert {s.category for s in st.points} == {Category.ok, Category.incomplete, Category.missing}


def test_make_status_prints_the_table_and_refuses_a_non_sweep(sweep, tmp_path):
    p = subprocess.run(
        ["make", "status", f"RESULTS_DIR={sweep.parent}", "SWEEP=smoke"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert re.search(r"│ ok\s+│\s+8 │\s+100% │", p.stdout), p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "benchmark.sweep.status", str(tmp_path)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "multirun.yaml not found" in p.stderr and len(p.stderr.splitlines()) == 1


def test_status_runs_without_torch(sweep):
    code = (
        f"import sys; from benchmark.sweep import status, progress; "
        f"st = status.sweep_status({str(sweep)!r}); print(len(st.points), 'torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(N), "False"]


def run_with_progress(results: Path, *extra: str) -> tuple[int, str]:
    marks = results / "smoke" / ".marks"
    buf = io.StringIO()
    rc = progress.run(
        multirun(results, f"skip_marks={marks}", *extra),
        results / "smoke",
        marks,
        interval=0.2,
        console=Console(file=buf, width=200, color_system=None),
    )
    shutil.rmtree(marks, ignore_errors=True)
    return rc, buf.getvalue()


def test_progress_counts_a_sweep_and_its_rerun(tmp_path):
    rc, out = run_with_progress(tmp_path / "results")
    assert rc == 0, out
    assert out.count("skipping complete run") == 0 and out.count("[benchmark.job.execute][INFO] - run ") >= N
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith(f"sweep smoke: {N}/{N} grid points done, 0 failed, 0 diverged, 0 skipped")
    )
    rc, out = run_with_progress(tmp_path / "results")
    assert rc == 0
    assert out.count("skipping complete run") == N
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith(f"sweep smoke: {N}/{N} grid points done, 0 failed, 0 diverged, {N} skipped")
    )


def test_progress_passes_the_commands_failure_on(tmp_path):
    rc, out = run_with_progress(tmp_path / "results", "train.steps=0")  # a config error: exit 2, nothing run
    assert rc != 0
    assert "invalid config: train.steps=0" in out
    assert "sweep smoke: 0/" in out.rstrip().splitlines()[-1]


def test_ctrl_c_stops_the_sweep_and_the_display_cleanly(tmp_path):
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "benchmark.sweep.progress",
        str(results / "smoke"),
        "--interval",
        "0.2",
        "--",
        *multirun(results, "train.steps=400"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=as_terminal_job,
    )
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end and not list((results / "smoke" / "runs").glob("*/metrics.json")):
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    last = out.rstrip().splitlines()[-1]
    assert re.match(rf"interrupted: sweep smoke: [1-7]/{N} grid points done", last), last
    assert last.endswith(progress.RESUME) and "Traceback" not in out  # the jobs' tracebacks: in the log file
    assert (results / "smoke" / "hydra" / "interrupted.log").exists()
    assert not [p for p in proc_children(proc.pid)]  # nothing left running


def proc_children(pid: int) -> list[int]:
    """Processes still in the wrapper's session (it ran in a new one)."""
    out = subprocess.run(["ps", "-eo", "pid,sid"], capture_output=True, text=True).stdout.split("\n")[1:]
    return [int(a) for a, b in (line.split() for line in out if line.strip()) if int(b) == pid]


def test_progress_under_joblib_keeps_every_line_whole(tmp_path):
    """Two worker processes write at once; their lines reach the display whole, above one bar."""
    rc, out = run_with_progress(tmp_path / "results", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert rc == 0, out[-3000:]
    log = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[[\w.]+\](\[\w+\])? ")
    for line in out.splitlines():
        assert log.match(line) or line.startswith("sweep smoke") or line.startswith("\t"), repr(line)
    assert out.count("[benchmark.job.execute][INFO] - run ") == 2 * N  # "-> folder" and "status=ok", per point
    assert out.rstrip().splitlines()[-1].startswith(f"sweep smoke: {N}/{N} grid points done, 0 failed")


def test_a_grid_point_that_no_longer_composes_is_a_clear_error(sweep):
    mr = sweep / "hydra" / "multirun.yaml"
    mr.write_text(mr.read_text().replace("- cell=lstm", "- cell=lstmm"))
    with pytest.raises(status.SweepError, match=r"grid point 0 \(cell=lstmm .* no longer composes"):
        status.sweep_status(sweep)


def test_watcher_counts_only_this_sweeps_points(swept, tmp_path):
    """Runs finished before the sweep started are not progress; skips come from the marks folder."""
    sweep = tmp_path / "smoke"
    shutil.copytree(swept, sweep)
    runs = sorted((sweep / "runs").iterdir())
    start = time.time()
    for d in runs:  # everything on disk is older than this sweep...
        os.utime(d / "metrics.json", (start - 100, start - 100))
    os.utime(sweep / "hydra" / "multirun.yaml", (start - 100, start - 100))
    marks = tmp_path / "marks"
    w = progress.Watcher(sweep, marks, start)
    c = w.poll()
    assert (c.total, c.done, c.skipped) == (None, 0, 0)  # an earlier sweep's multirun.yaml: no total yet
    os.utime(sweep / "hydra" / "multirun.yaml")  # ...until this sweep writes its own
    m = json.loads((runs[0] / "metrics.json").read_text())
    (runs[0] / "metrics.json").write_text(json.dumps({**m, "status": "failed"}))  # re-run now, failed
    (runs[1] / "metrics.json").write_text(json.dumps(m))  # re-run now, ok
    marks.mkdir()
    for d in runs[2:5]:
        (marks / d.name).touch()  # three points skipped
    c = w.poll(wait=True)  # the grid's run ids read (in a thread of their own) before counting
    assert (c.total, c.done, c.n("failed"), c.n("ok"), c.skipped) == (N, 5, 1, 1, 3)
    assert (
        c.line("smoke", 61) == f"sweep smoke: 5/{N} grid points done, 1 failed, 0 diverged, 3 skipped (0:01:01 elapsed)"
    )


def test_report_lists_the_grid_points_never_started(sweep, tmp_path):
    """The report's failures section names every missing grid point, and says so when there are none."""
    from benchmark.analysis import report

    full = report.build(sweep, tmp_path / "full").read_text()
    assert 'id="missing-none"' in full and 'id="missing-table"' not in full
    never = {p.label: p for p in status.grid(sweep)}["cell=lstm reg=both task.seq_len=10 seed=0"].run_id
    shutil.rmtree(sweep / "runs" / never)
    for f in ("summary.parquet", "summary.csv", "profiles.parquet", "curves.parquet"):
        (sweep / f).unlink(missing_ok=True)
    html = report.build(sweep, tmp_path / "partial").read_text()
    table = html[html.index('id="missing-table"') :]
    assert never in table[: table.index("</table>")] and "1 point(s) of the sweep" in html
