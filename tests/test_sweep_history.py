"""The sweep's history (benchmark/sweep/history.py): the SLURM launcher's record of lost jobs, read back by
`make status`, the report and `make sweep`'s last line."""

from __future__ import annotations

import json

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.sweep import history
from benchmark.sweep.history import LostJob

from helpers import python_m

A = ("cell=lstm", "reg=bn", "seed=0", "+experiment=smoke")
B = ("cell=lstm", "reg=bn", "seed=1", "+experiment=smoke")


def lost_event(job: str, *points: tuple[str, ...], state: str = "CANCELLED") -> dict:
    return {"event": "lost", "job": job, "state": state, "log": f"{job}.err", "points": [list(p) for p in points]}


def test_point_key_drops_what_leaves_the_run_id_unchanged():
    overrides = ["cell=lstm", "results_dir=/tmp/r", "sweep=s", "skip_marks=/tmp/m", "seed=0", "+experiment=smoke"]
    assert history.point_key(overrides) == ("cell=lstm", "seed=0", "+experiment=smoke")


def test_events_read_back_in_order_and_a_torn_line_is_skipped(tmp_path):
    history.append(tmp_path, {"event": "launch", "jobs": 2, "array": "47"})
    with (tmp_path / history.HISTORY).open("a") as f:
        f.write('{"event": "lost", "job": "47_0", "sta')  # a writer killed mid-line
    history.append(tmp_path, {"event": "end", "jobs": 2, "lost_jobs": 0, "line": None})
    events = history.read(tmp_path)
    assert [e["event"] for e in events] == ["launch", "end"] and all("time" in e for e in events)
    assert history.read(tmp_path / "nowhere") == []


def test_points_are_lost_until_the_next_launch(tmp_path):
    history.append(tmp_path, {"event": "launch", "jobs": 2, "array": "47"})
    history.append(tmp_path, lost_event("47_0", A))
    history.append(tmp_path, {"event": "launch", "jobs": 2, "array": "48"})  # the same command again
    assert history.lost_points(tmp_path) == {}
    history.append(tmp_path, lost_event("48_1", A, B, state="NODE_FAIL"))
    lost = history.lost_points(tmp_path)
    assert set(lost) == {A, B} and lost[A] == LostJob("48_1", "NODE_FAIL", "48_1.err", (A, B))


def test_the_line_names_the_first_job_and_counts_the_rest():
    one = LostJob("47_0", "CANCELLED", "r/47_0_0_log.err")
    two = LostJob("47_5", "OUT_OF_MEMORY", "r/47_5_0_log.err")
    assert history.lost_line("claims_lstm", 4, [one], 10) == (
        "sweep claims_lstm: 1 of 4 jobs lost (CANCELLED, job 47_0, log r/47_0_0_log.err): 10 points; "
        "run the same command to resume them"
    )
    line = history.lost_line("smoke", 24, [one, two], 4)
    assert "2 of 24 jobs lost (CANCELLED, job 47_0" in line and "1 more: make status SWEEP=smoke lists them" in line
    assert "\n" not in line


def test_cli_prints_the_last_launchs_line_and_exits_3(tmp_path):
    p = python_m("benchmark.sweep.history", str(tmp_path))
    assert (p.returncode, p.stdout) == (0, "")  # no history: a sweep that lost nothing
    history.append(tmp_path, {"event": "launch", "jobs": 4, "array": "47"})
    history.append(tmp_path, {"event": "end", "jobs": 4, "lost_jobs": 1, "lost_points": 10, "line": "sweep s: 1 of 4"})
    p = python_m("benchmark.sweep.history", str(tmp_path))
    assert (p.returncode, p.stdout) == (history.LOST_EXIT, "sweep s: 1 of 4\n")
    history.append(tmp_path, {"event": "launch", "jobs": 4, "array": "48"})
    history.append(tmp_path, {"event": "end", "jobs": 4, "lost_jobs": 0, "lost_points": 0, "line": None})
    assert python_m("benchmark.sweep.history", str(tmp_path)).returncode == 0
    assert json.loads((tmp_path / history.HISTORY).read_text().splitlines()[-1])["event"] == "end"


def test_a_sweep_that_lost_jobs_still_reports_then_says_so_last(tmp_path, monkeypatch, capsys):
    """`make sweep` (benchmark/sweep/driver.py): lost cluster jobs end the stages, the report is written, the
    line about the lost jobs is the last one and the exit status is LOST_EXIT; any other failure skips the report."""
    from benchmark.sweep import driver

    plan = driver.Plan("smoke", "s", tmp_path / "results", tmp_path / "reports")
    reported = []
    monkeypatch.setattr(driver, "report", lambda p: reported.append(p) or print("report: index.html") or 0)
    history.append(plan.sweep_dir, {"event": "launch", "jobs": 4, "array": "47"})
    history.append(
        plan.sweep_dir, {"event": "end", "jobs": 4, "lost_jobs": 1, "lost_points": 10, "line": "sweep s: 1 of 4"}
    )
    monkeypatch.setattr(driver, "run_multiruns", lambda p, marks: history.LOST_EXIT)
    assert driver.sweep(plan) == history.LOST_EXIT and reported == [plan]
    assert capsys.readouterr().out.splitlines()[-2:] == ["report: index.html", "sweep s: 1 of 4"]
    monkeypatch.setattr(driver, "run_multiruns", lambda p, marks: 1)
    assert driver.sweep(plan) == 1 and reported == [plan]  # a failed multirun: no report
