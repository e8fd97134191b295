"""`make sweep` as a user meets it (benchmark/sweep/driver.py, lock.py, benchmark/sweep/progress.py): every fault a
user can cause gives one line and a non-zero exit, and loses nothing.

In-process where the subprocess is not the point: the driver's checks, the lock, the progress counts, a full
disk, `make report` and `make status` without arguments. In a subprocess where it is: a lock whose holder was
SIGKILLed, Ctrl-C reaching a whole process group. Real `make sweep`s, two at once: tests marked `sweep`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.analysis import report
from benchmark.sweep import driver, lock, progress, status

from helpers import ENV, PLUGIN, PLUGIN_SEARCHPATH, ROOT, as_terminal_job, compose, run
from synthetic_runs import make_run


def plan(tmp_path: Path, experiment: str = "smoke", **kw) -> driver.Plan:
    return driver.Plan(experiment, experiment, tmp_path / "results", tmp_path / "reports", **kw)


def one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in text, text
    return lines[0]


# --- before anything runs ------------------------------------------------------------------------------


def test_an_unknown_experiment_stops_after_one_line_listing_the_experiments(tmp_path, capsys):
    assert driver.sweep(plan(tmp_path, "doesnotexist")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "EXPERIMENT='doesnotexist'" in line and "claims_cpu" in line and "smoke" in line
    assert not list(tmp_path.iterdir())  # no multirun started, nothing written


def test_an_unknown_experiment_lists_the_experiments_of_the_whole_search_path_and_runs_nothing(tmp_path, capsys):
    assert driver.sweep(plan(tmp_path, "doesnotexist", overrides=(PLUGIN_SEARCHPATH,))) == 2
    line = one_error_line(capsys.readouterr().err)
    assert all(name in line for name in ("'doesnotexist'", "'claims_cpu'", "'smoke'", "'my_claims'", "'my_grid'"))
    assert not list(tmp_path.iterdir())  # no results or reports folder, no multirun, no report


@pytest.mark.parametrize("bad", [f"+{PLUGIN_SEARCHPATH}", "hydra.searchpath=[file:///no/such/study/conf]"])
def test_a_search_path_the_runs_would_not_search_is_one_line_before_anything_runs(tmp_path, capsys, bad):
    assert driver.sweep(plan(tmp_path, "my_grid", overrides=(bad,))) == 2
    assert "invalid config: hydra.searchpath=" in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_a_users_protocol_stage_composes_from_the_users_folder_and_the_stages_designs(tmp_path):
    """Experiment and regime only in the user's folder: the checks pass, and each multirun gets one search path
    (the stage's designs, then the user's folder) with which Hydra composes the user's regime."""
    from benchmark.sweep import protocol

    p = plan(tmp_path, "my_claims", overrides=("cell=lstm", PLUGIN_SEARCHPATH))
    driver.check_start(p)
    (stage,) = driver.stages(p, protocol.freeze(p.experiment, p.search), confirm=False)
    cmd = p.multirun(tmp_path / "marks", stage)
    paths = [o for o in cmd if "hydra.searchpath" in o]
    assert paths == [f"hydra.searchpath=[file://{p.sweep_dir.resolve() / 'plan' / 'tune'},file://{PLUGIN / 'conf'}]"]
    assert cmd[-2:] == ["seed=1", "cell=lstm"]  # the user's other overrides stay last
    design = next(o for o in cmd if o.startswith("design=")).split("=")[1].split(",")[0]
    cfg = compose(paths[0], f"+experiment={p.experiment}", f"design={design}")
    assert (cfg.task.name, cfg.train.steps, cfg.task.seq_len, cfg.hidden_size) == ("sign", 6, 8, 8)


@pytest.mark.parametrize("which", ["RESULTS_DIR", "REPORTS_DIR"])
def test_a_folder_in_the_way_of_results_or_reports_is_one_line(tmp_path, capsys, which):
    blocker = tmp_path / ("results" if which == "RESULTS_DIR" else "reports")
    blocker.write_text("a file where the folder should be")
    assert driver.sweep(plan(tmp_path)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{which}=" in line and f"{blocker} is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [blocker.name]  # nothing else written


def test_an_unwritable_results_folder_is_one_line_naming_the_systems_reason(tmp_path, capsys, monkeypatch):
    """The probe makes (and removes) a folder where the results go; the system's refusal is the message. (A
    chmod cannot refuse root, which runs CI: the refusal is simulated here, a real one in the next test.)"""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refuse)
    assert driver.sweep(plan(tmp_path)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "RESULTS_DIR=" in line and "a folder this user can write" in line and "Permission denied" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder whatever its mode: nothing to refuse")
def test_a_read_only_results_folder_is_refused_by_the_system(tmp_path, capsys):
    (tmp_path / "results").mkdir(mode=0o555)
    assert driver.sweep(plan(tmp_path)) == 2
    assert "Permission denied" in one_error_line(capsys.readouterr().err)


# --- one writer per sweep -------------------------------------------------------------------------------


def test_a_second_sweep_of_a_running_sweep_exits_at_once_naming_its_pid_and_host(tmp_path, capsys):
    p = plan(tmp_path)
    with lock.sweep_lock(p.sweep_dir, say=print):
        assert driver.sweep(p) == driver.BUSY
        line = one_error_line(capsys.readouterr().err)
        assert f"sweep smoke is already running (pid {os.getpid()} on {socket.gethostname()}" in line
        assert sorted(f.name for f in p.sweep_dir.iterdir()) == [lock.LOCK, lock.OWNER]  # it started nothing
    assert not (p.sweep_dir / lock.OWNER).exists()  # released: the record goes with the lock


def test_the_lock_is_released_when_its_block_raises(tmp_path):
    with pytest.raises(RuntimeError), lock.sweep_lock(tmp_path / "s", say=print):
        raise RuntimeError("a sweep that failed")
    with lock.sweep_lock(tmp_path / "s", say=pytest.fail):  # free again, and not stale
        pass


def test_a_lock_whose_holder_was_killed_is_taken_over_with_a_message(tmp_path):
    """SIGKILL gives the holder no chance to release: the system frees the lock, its owner record stays, and the
    next sweep says whose it takes over."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from benchmark.sweep.lock import sweep_lock\n"
            f"with sweep_lock({str(tmp_path / 's')!r}, say=print):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.SweepBusy, match=f"pid {holder.pid} on"):
            with lock.sweep_lock(tmp_path / "s", say=print):
                pass
    finally:
        holder.kill()
        holder.wait()
    said: list[str] = []
    with lock.sweep_lock(tmp_path / "s", say=said.append) as me:
        assert lock.read_owner(tmp_path / "s")["pid"] == me["pid"] == os.getpid()
    assert len(said) == 1 and f"taking over the stale lock of s (pid {holder.pid} on" in said[0]


# --- progress never exceeds the grid ------------------------------------------------------------------


def fake_multirun(sweep_dir: Path, seeds: list[int]) -> None:
    """A multirun.yaml as the cohort sweeper saves it: 2 cells x the seeds (seed a cohort axis)."""
    (sweep_dir / "hydra").mkdir(parents=True, exist_ok=True)
    record = {
        "cohort": {"axes": ["seed"]},
        "hydra": {
            "sweeper": {
                "_target_": "hydra_plugins.cohort_sweeper.cohort_sweeper.CohortSweeper",
                "params": {"cell": "lstm,gru", "seed": ",".join(map(str, seeds))},
            },
            "overrides": {"task": ["+experiment=smoke"], "hydra": []},
        },
    }
    (sweep_dir / status.MULTIRUN).write_text(yaml.safe_dump(record))


def test_progress_never_exceeds_the_grid_after_tuning_skips_and_on_a_rerun(tmp_path):
    """A resumed claims sweep read "54/40", then "64/40 done": its confirmation stage counted the tuning stage's
    skipped points and every run completed since it started. Only this multirun's grid points count, once each."""
    sweep, start = tmp_path / "claims", time.time()
    tuning = [make_run(sweep, cell=c, seed=s) for c in ("lstm", "gru") for s in (100, 101)]
    confirmation = {c: [make_run(sweep, cell=c, seed=s) for s in (0, 1, 2)] for c in ("lstm", "gru")}
    grid = {f.name for runs in confirmation.values() for f in runs}  # the confirmation stage's 6 points
    for f in (sweep / "runs").iterdir():
        os.utime(f / "metrics.json", (start - 100, start - 100))  # complete before this multirun
    marks = tmp_path / "marks"  # one `make sweep`'s marks: the tuning stage skipped all 4 of its points
    marks.mkdir()
    for f in [*tuning, *confirmation["lstm"][:2]]:  # ... and the confirmation stage 2 of its 6
        (marks / f.name).touch()
    fake_multirun(sweep, [0, 1, 2])  # this multirun's record
    os.utime(sweep / status.MULTIRUN, (start + 1, start + 1))
    for f in [*confirmation["lstm"][2:], *confirmation["gru"], *tuning[:2]]:  # completed since it started: 4 of
        os.utime(f / "metrics.json", (start + 2, start + 2))  # its points, and 2 of another multirun's
    w = progress.Watcher(sweep, marks, start, run_ids=lambda d: set(grid))
    c = w.poll(wait=True)
    assert (c.total, c.done, c.skipped, len(c.finished)) == (6, 6, 2, 4)
    for f in confirmation["lstm"][:2]:  # a point both skipped and completed (forced) counts once
        os.utime(f / "metrics.json", (start + 3, start + 3))
    assert w.poll().done == 6
    for f in grid:  # the same command again: every point skipped
        (marks / f).touch()
    os.utime(sweep / status.MULTIRUN, (start + 10, start + 10))
    c = progress.Watcher(sweep, marks, start + 5, run_ids=lambda d: set(grid)).poll(wait=True)
    assert (c.total, c.done, c.skipped) == (6, 6, 6)
    assert c.line("claims (confirmation)", 1.0).startswith("sweep claims (confirmation): 6/6 grid points done")


def test_progress_waits_for_this_multiruns_record_and_counts_nothing_before(tmp_path):
    sweep = tmp_path / "s"
    make_run(sweep, seed=0)
    fake_multirun(sweep, [0])
    os.utime(sweep / status.MULTIRUN, (1, 1))  # an earlier multirun's record
    c = progress.Watcher(sweep, None, time.time(), run_ids=lambda d: pytest.fail("read too early")).poll(wait=True)
    assert (c.total, c.done) == (None, 0)


# --- Ctrl-C ----------------------------------------------------------------------------------------------

NOISY_JOB = """
import signal, sys, time, traceback
def stop(*_):
    traceback.print_stack()  # what joblib's workers and Hydra print on KeyboardInterrupt
    print("Traceback (most recent call last):\\nKeyboardInterrupt", file=sys.stderr, flush=True)
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
print("job started", flush=True)
time.sleep(120)
"""


def test_ctrl_c_is_one_line_saying_the_same_command_resumes(tmp_path):
    """Ctrl-C reaches the whole foreground process group: the wrapper and the multirun's jobs, which print
    tracebacks as they stop. Those go to the sweep's interrupted.log; the terminal gets one line."""
    sweep = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.sweep.progress", str(sweep), "--", sys.executable, "-c", NOISY_JOB],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
        preexec_fn=as_terminal_job,
    )
    try:
        assert proc.stdout.readline().strip() == "job started"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    lines = out.strip().splitlines()
    assert "Traceback" not in out and len(lines) == 1, out
    assert lines[0].startswith("interrupted: sweep s: 0/? grid points done") and lines[0].endswith(progress.RESUME)
    assert "KeyboardInterrupt" in (sweep / "hydra" / "interrupted.log").read_text()


# --- a full disk -----------------------------------------------------------------------------------------


def test_a_full_disk_names_the_file_keeps_what_is_complete_and_leaves_no_marker(tmp_path, tiny, monkeypatch):
    from benchmark.core import io as bm_io
    from benchmark.job import execute, prepare

    done = prepare.prepare(tiny("seed=0", f"results_dir={tmp_path}"))
    assert execute.execute([done], 1, False, 0, execute.SOLO) == ["ok"]
    p = prepare.prepare(tiny("seed=1", f"results_dir={tmp_path}"))
    real = bm_io.atomic_write

    def full(path, write):
        if Path(path).name == "metrics.json":
            real(path, lambda tmp: (write(tmp), _raise_enospc()))
        real(path, write)

    monkeypatch.setattr(bm_io, "atomic_write", full)
    with pytest.raises(OSError) as e:
        execute.execute([p], 1, False, 0, execute.SOLO)
    line = bm_io.write_failure(e.value)
    assert line.startswith(f"cannot write {p.out / 'metrics.json'}: No space left on device;") and "\n" not in line
    assert "run the same command again to resume" in line
    assert sorted(f.name for f in p.out.iterdir()) == ["config.yaml", "history.csv"]  # no temp file, no record
    assert not list((tmp_path / "single" / ".running").iterdir())  # no job marker left behind
    assert bm_io.is_complete(done.out) and not bm_io.is_complete(p.out)  # a re-run redoes only this point


def test_a_failed_multirun_leaves_no_job_markers_and_no_skip_marks(tmp_path, monkeypatch):
    """A job killed by a full disk (or joblib stopping the others) leaves its file in results/<sweep>/.running;
    the sweep's lock means no job of it runs before or after its multiruns, so the driver removes them."""
    p = plan(tmp_path)
    running = p.sweep_dir / ".running"
    running.mkdir(parents=True)
    (running / "123-0badc0de.lock").touch()  # an earlier sweep's killed job

    def failing(plan: driver.Plan, marks: Path) -> int:
        assert not list(running.iterdir())  # cleaned before the multiruns
        marks.mkdir()
        (marks / "0123456789ab").touch()
        (running / "456-deadbeef.lock").touch()  # this sweep's job, killed
        return 1

    monkeypatch.setattr(driver, "run_multiruns", failing)
    assert driver.sweep(p) == 1
    assert sorted(f.name for f in p.sweep_dir.iterdir()) == [".lock", ".running"] and not list(running.iterdir())


def _raise_enospc() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_in_a_multirun_is_one_line_from_the_sweeper(tmp_path, capsys):
    """A job that cannot write its record, or Hydra's files for it, ends the multirun with one line (joblib
    re-raises the first job's error in the multirun's process; the cohort sweeper says it)."""
    from test_cohort_sweep import sweeper_for

    sweeper, _ = sweeper_for("+experiment=smoke", f"results_dir={tmp_path}", "cell=rnn", "reg=none")

    class FullDisk:
        def launch(self, batch, initial_job_idx):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "smoke" / "runs" / "x" / "a.json"))

    sweeper.launcher = FullDisk()
    with pytest.raises(SystemExit) as e:
        sweeper.sweep(["+experiment=smoke", f"results_dir={tmp_path}", "cell=rnn", "reg=none"])
    assert e.value.code == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {tmp_path / 'smoke' / 'runs' / 'x' / 'a.json'}: No space left on device" in line


# --- make report and make status without arguments -------------------------------------------------------


def test_report_without_results_says_so_once(tmp_path, capsys):
    missing = tmp_path / "results" / "claims_cpu"
    assert report.main([str(missing), "--aggregate", "--out", str(tmp_path / "reports")]) == 2
    captured = capsys.readouterr()
    assert one_error_line(captured.err).count(str(missing)) == 1 and not captured.out
    assert not (tmp_path / "reports").exists()


def test_status_of_a_sweep_that_is_not_there_lists_the_sweeps_that_are(tmp_path, capsys):
    for name in ("quick", "smoke"):
        fake_multirun(tmp_path / "results" / name, [0])
    (tmp_path / "results" / "notasweep").mkdir()
    assert status.main([str(tmp_path / "results" / "claims_cpu")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "claims_cpu/hydra/multirun.yaml not found" in line
    assert line.endswith(f"sweeps in {tmp_path / 'results'}/: quick, smoke (make status SWEEP=<name>)")


def test_status_names_a_torn_metrics_json_as_corrupt(tmp_path):
    """A truncated metrics.json was "incomplete or running", naming no file."""
    sweep = tmp_path / "s"
    good, torn = make_run(sweep, seed=0), make_run(sweep, seed=1)
    (torn / "metrics.json").write_text('{"complete": true, "sta')
    points = [status.GridPoint(i, (f"seed={i}",), (("seed", str(i)),), f.name) for i, f in enumerate((good, torn))]
    st = status.sweep_status(sweep, points)
    assert [(s.category, s.error) for s in st.points] == [
        (status.Category.ok, None),
        (status.Category.corrupt, f"unreadable {torn / 'metrics.json'}"),
    ]


# --- the Makefile ----------------------------------------------------------------------------------------


def test_every_phony_target_has_a_recipe_and_the_screenshot_keeps_the_readmes_picture():
    text = (ROOT / "Makefile").read_text()
    phony = " ".join(
        line.split(":", 1)[1].replace("\\", " ")
        for line in text.replace("\\\n", " ").splitlines()
        if line.startswith(".PHONY:")
    ).split()
    targets = {line.split(":", 1)[0] for line in text.splitlines() if line and line[0].isalpha() and ":" in line}
    assert set(phony) <= targets, set(phony) - targets
    out = run(["make", "-n", "screenshot", "SWEEP=quick", f"VPY={sys.executable}"], cwd=ROOT, check=True).stdout
    assert "reports/quick/index.html reports/quick/report-claims.png" in out and "docs/" not in out


def test_hydras_job_listing_goes_to_the_sweeps_log_file(tmp_path, capsys):
    """Each sweep opened with one line per job (absolute paths and all): Hydra's own log lines go to
    results/<sweep>/hydra/multirun.log, made at the first line; a log that cannot be written says so once."""
    import logging

    from benchmark.sweep.hydra_log import SweepLogFile

    from helpers import compose

    h = compose(f"results_dir={tmp_path}", "sweep=s", hydra_config=True).hydra
    handlers = h.hydra_logging.handlers
    assert handlers.file["class"] == "benchmark.sweep.hydra_log.SweepLogFile"
    assert handlers.console.level == "WARNING" and h.hydra_logging.root.handlers == ["file", "console"]
    log = tmp_path / "s" / "hydra" / "multirun.log"
    handler = SweepLogFile(str(log))
    assert not log.parent.exists()  # nothing made before the first line
    handler.emit(logging.LogRecord("hydra", logging.INFO, __file__, 1, "\t#0 : cell=rnn", None, None))
    handler.close()
    assert log.read_text() == "\t#0 : cell=rnn\n"
    blocked = tmp_path / "file"
    blocked.write_text("")
    handler = SweepLogFile(str(blocked / "hydra" / "multirun.log"))
    handler.emit(logging.LogRecord("hydra", logging.INFO, __file__, 1, "#1 : cell=gru", None, None))
    handler.close()
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("hydra's log lines go to stderr: cannot write") and "#1 : cell=gru" in err
    if Path("/dev/full").exists():  # a device that is always full: each write fails with ENOSPC
        handler = SweepLogFile("/dev/full")
        for n in range(3):
            handler.emit(logging.LogRecord("hydra", logging.INFO, __file__, 1, f"#{n} : cell=rnn", None, None))
        handler.close()
        err = capsys.readouterr().err
        assert err.splitlines() == [
            "hydra's log lines go to stderr: cannot write /dev/full (No space left on device)",
            *(f"#{n} : cell=rnn" for n in range(3)),
        ], err  # one line, then the lines themselves: no "--- Logging error ---" traceback per line


# --- two real `make sweep`s at once -----------------------------------------------------------------------


@pytest.mark.sweep
def test_two_make_sweeps_of_one_sweep_train_each_point_once(tmp_path):
    """The second exits at once, naming the first's pid; the first trains 48 points, each once (without the
    lock: 83 trainings for 48 points, a temp-file crash, progress at 54/48)."""
    make = ["make", "sweep", "EXPERIMENT=smoke", f"RESULTS_DIR={tmp_path / 'results'}"]
    make += [f"REPORTS_DIR={tmp_path / 'reports'}", f"VPY={sys.executable}"]
    first = subprocess.Popen(make, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    owner = tmp_path / "results" / "smoke" / lock.OWNER
    end = time.monotonic() + 120
    while not owner.exists() and time.monotonic() < end and first.poll() is None:
        time.sleep(0.05)
    second = run(make, timeout=120)
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]
    holder = json.loads(owner.read_text()) if owner.exists() else None
    assert holder is None  # released at the end
    assert second.returncode != 0
    err = [line for line in second.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\* ", line)]  # make's own
    assert len(err) == 1 and "sweep smoke is already running (pid" in err[0] and not second.stdout.strip()
    trained = out.count("status=ok")
    assert trained == 48 and "skipping complete run" not in out
    assert len(list((tmp_path / "results" / "smoke" / "runs").iterdir())) == 48
    assert "sweep smoke: 48/48 grid points done" in out
