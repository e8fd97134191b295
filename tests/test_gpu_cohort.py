"""`benchmark.perf.gpu_cohort`, the cohort step costs the GPU estimate is built from: on the CPU, its rows and
refusals."""

from __future__ import annotations

import json

import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.perf import gpu_cohort


def test_rows_time_the_cohort_step_and_one_member_alone_and_survive_a_failing_variant(tmp_path, capsys):
    out = tmp_path / "c.json"
    argv = ["--device", "cpu", "--accels", "none", "--cells", "gru", "--arms", "bn", "no_such_arm", "--seq-lens", "6"]
    argv += ["--members", "3", "--hidden", "8", "--batch", "4", "--warmup", "1", "--repeats", "2", "--solo"]
    assert gpu_cohort.main(argv + ["--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    ok, bad = rows
    assert (ok["cell"], ok["arm"], ok["members"], ok["accel"]) == ("gru", "bn", 3, "none")
    assert ok["step_ms"] > 0 and ok["solo_ms"] > 0 and ok["capture_s"] == 0
    assert bad["arm"] == "no_such_arm" and "error" in bad and "step_ms" not in bad
    assert "FAILED" in capsys.readouterr().out
    gpu_cohort.main(argv[:-1] + ["--out", str(out), "--append", "--seq-lens", "8"])
    assert len(json.loads(out.read_text())["rows"]) == 4


def test_graph_on_the_cpu_is_refused():
    with pytest.raises(SystemExit):
        gpu_cohort.main(["--device", "cpu", "--accels", "graph"])
