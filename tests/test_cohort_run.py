"""A cohort job (benchmark/job/cohort_run.py): each member is recorded as its run alone (a stack of one) would be.

In-process: the job's config is composed as `benchmark.run.main` sees it (cohort.members set, as the
cohort sweeper sets it), its members prepared, and `run_job` called.
"""

from __future__ import annotations

import json

import pytest

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.core.config import ConfigError
from benchmark.job.cohort_run import cuda_eager_stack_loses, run_job, stack_loses
from benchmark.job.execute import SOLO, execute
from benchmark.job.members import members_override
from benchmark.job.prepare import member_configs, prepare, prepare_job
from benchmark.sweep.cohort_sweep import group_jobs

from helpers import TINY, compose

MEMBERS = "cohort.members=[{seed:0,train:{lr:0.01}},{seed:1,train:{lr:0.01}},{seed:0,train:{lr:0.03}}]"


def job(tmp_path, *overrides: str):
    cfg = compose(*TINY, f"results_dir={tmp_path}", "sweep=c", MEMBERS, *overrides)
    return [prepare(c) for c in member_configs(cfg)]


def record(p) -> dict:
    return json.loads((p.out / "metrics.json").read_text())


def test_a_stacked_job_writes_each_member_under_its_solo_run_id_with_its_solo_numbers(tmp_path):
    ps = job(tmp_path / "cohort", "cell=gru", "reg=bn")
    assert run_job(ps, threads=1) == ["ok"] * 3
    solos = job(tmp_path / "solo", "cell=gru", "reg=bn")
    for p, s in zip(ps, solos):
        assert p.run_id == s.run_id  # cohort is not part of a run id
        execute([s], 1, False, 0, SOLO)
        a, b = record(p), record(s)
        assert (a["cohort_mode"], a["cohort_size"], b["cohort_mode"], b["cohort_size"]) == ("stacked", 3, "solo", 1)
        assert (a["seed"], a["lr"]) == (b["seed"], b["lr"])
        for k in ("test_score", "val_score", "train_loss", "hidden_grad_ratio_end", "grad_norm_mean"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-6), k
    assert len({record(p)["cohort_id"] for p in ps}) == 1


def test_a_job_of_plain_lstms_runs_its_members_one_after_another_on_the_cpu(tmp_path):
    ps = job(tmp_path, "cell=lstm", "reg=none")
    assert run_job(ps, threads=1) == ["ok"] * 3
    assert {record(p)["cohort_mode"] for p in ps} == {"sequential"}


def test_a_rerun_trains_only_the_missing_members(tmp_path):
    ps = job(tmp_path, "cell=rnn", "reg=dropout")
    assert run_job(ps[:1], threads=1) == ["ok"]
    assert record(ps[0])["cohort_mode"] == "solo"
    assert run_job(ps, threads=1) == ["skipped", "ok", "ok"]
    assert [record(p)["cohort_size"] for p in ps] == [1, 2, 2]
    assert run_job(ps, threads=1) == ["skipped"] * 3


def test_stacked_mode_names_the_key_where_members_cannot_share_a_stack(tmp_path):
    """accel=compile speeds up one model's loop: its members run one by one; asked to stack, a clear error."""
    ps = job(tmp_path, "cell=lstm", "reg=bn", "accel=compile", "cohort.mode=stacked")
    with pytest.raises(ConfigError, match="cohort.mode"):
        run_job(ps, threads=1)
    assert not any(p.out.exists() for p in ps)  # nothing written


def test_each_member_is_prepared_with_the_grid_point_hydra_would_have_launched(tmp_path):
    jobs = [["cell=rnn", f"seed={s}", f"train.lr={lr}"] for s in (0, 1) for lr in ("0.01", "1e-05")]
    (launched,) = group_jobs(jobs, ["seed", "train.lr"])
    cfg = compose(*TINY, f"results_dir={tmp_path}", *launched)
    assert [list(p.point) for p in prepare_job(cfg, launched)] == jobs
    # members set by no override of the job's (a config file, say): their points from the config's values
    assert [list(p.point) for p in prepare_job(cfg, launched[:-1])] == jobs
    assert [list(p.point) for p in prepare_job(compose(*TINY, "seed=3"), ["seed=3"])] == [["seed=3"]]


@pytest.mark.parametrize(
    "members, why",
    [
        ("[{seed:0,hidden_size:4}]", "mappings of cohort.axes"),  # a key outside the axes
        ("[{seed:0},{}]", "mappings of cohort.axes"),  # a member that sets nothing
        ("[{seed:[0,1]}]", "to plain values"),
        ("[{train:{lr:{a:1}}}]", "mappings of cohort.axes"),  # a node below an axis
        ("['seed=0 train.lr=0.01']", "mappings of cohort.axes"),  # a string, not a mapping
        ("[{seed:zero}]", "could not be converted"),  # the schema's type, named by OmegaConf
    ],
)
def test_a_member_that_is_not_a_mapping_of_axis_values_is_a_config_error(tmp_path, members, why):
    cfg = compose(*TINY, f"results_dir={tmp_path}", f"cohort.members={members}")
    with pytest.raises(ConfigError, match=why) as e:
        member_configs(cfg)
    assert e.value.key == "cohort.members" and "e.g. [{seed:0,train:{lr:0.01}},...]" in str(e.value)


def test_members_over_dropout_p_stack_and_members_over_a_shared_setting_run_one_by_one(tmp_path):
    """A cohort over output dropout's p trains stacked; one over a setting the stack shares (BN's eps) trains
    its members one after another, each its solo run, and names the reason in the log."""
    from benchmark.core.config import CohortMode
    from benchmark.job.cohort_run import choose_mode

    def members_over(key: str, values: tuple[float, float], *overrides: str):
        members = members_override([["seed=0", f"{key}={v}"] for v in values])
        cfg = compose(*TINY, f"results_dir={tmp_path}", "sweep=c", f"cohort.axes=[seed,{key}]", members, *overrides)
        return [prepare(c) for c in member_configs(cfg)]

    ps = members_over("reg.dropout.p", (0.1, 0.5), "cell=gru", "reg=dropout")
    assert [p.spec.reg.dropout.p for p in ps] == [0.1, 0.5] and choose_mode(ps) is CohortMode.stacked
    ps = members_over("reg.bn.eps", (1e-5, 1e-3), "cell=gru", "reg=bn")
    assert choose_mode(ps) is CohortMode.sequential
    assert run_job(ps, threads=1) == ["ok", "ok"]
    assert {record(p)["cohort_mode"] for p in ps} == {"sequential"}


@pytest.mark.parametrize(
    "cell, impl, device, hidden, members, accel, T, alone",
    [
        ("lstm", "native", "cpu", 128, 10, "none", 100, True),  # torch's fused LSTM beats the stack on the CPU
        ("lstm", "native", "cpu", 32, 10, "none", 100, False),  # ... but not at H=32 with 10 members
        ("gru", "native", "cpu", 128, 10, "none", 100, False),
        ("lstm", "native", "cuda", 128, 15, "none", 1000, True),  # cuDNN beats the eager stack at T=1000
        ("rnn", "native", "cuda", 128, 15, "none", 1000, True),
        ("rnn", "native", "cuda", 128, 15, "none", 100, False),  # ... but not the tanh RNN's at T=100
        ("lstm", "native", "cuda", 128, 5, "none", 100, True),  # nor 5 LSTMs at T=100
        ("lstm", "native", "cuda", 128, 15, "graph", 1000, False),  # not the graphed stack
        ("lstm", "custom", "cuda", 128, 15, "none", 1000, False),  # the custom loop (BN) alone loses to any stack
    ],
)
def test_members_train_one_after_another_only_where_measured_faster(
    cell, impl, device, hidden, members, accel, T, alone
):
    assert stack_loses(cell, impl, device, hidden, members, accel, T=T) is alone


def test_on_a_gpu_the_eager_stack_wins_from_a_member_count_that_grows_with_T():
    """The break-even member count (members alone cost E cuDNN steps, the eager stack about one launch-bound step)."""

    def break_even(cell: str, T: int) -> int:
        return next(e for e in range(1, 500) if not cuda_eager_stack_loses(cell, "none", T, e))

    for cell in ("rnn", "lstm", "gru"):
        counts = [break_even(cell, T) for T in (30, 100, 300, 1000)]
        assert counts == sorted(counts) and counts[0] < counts[-1], (cell, counts)
    assert cuda_eager_stack_loses("lstm", "zoneout_native_arm", 100, 5) == cuda_eager_stack_loses(
        "lstm", "none", 100, 5
    )


def test_the_blocks_no_run_reads_are_recorded_but_never_merged_per_member(tmp_path):
    """A claims experiment's `protocol` block is most of its config: every member's config.yaml records it,
    resolved, while the members are built and checked on a config without it (the run ids do not read it)."""
    jobs = [["cell=rnn", f"seed={s}"] for s in (0, 1)]
    (launched,) = group_jobs(jobs, ["seed", "train.lr"])
    plain = compose(*TINY, f"results_dir={tmp_path}", *launched)
    claims = compose(*TINY, f"results_dir={tmp_path}", *launched, "+protocol.tuning_seeds=[1000,1001]")
    got, want = prepare_job(claims, launched), prepare_job(plain, launched)
    assert [p.run_id for p in got] == [p.run_id for p in want]
    assert all(p.resolved["protocol"] == {"tuning_seeds": [1000, 1001]} for p in got)
    assert all(p.cfg.protocol is None for p in got)
    assert all("protocol" not in p.resolved or p.resolved["protocol"] is None for p in want)
    assert claims.protocol.tuning_seeds == [1000, 1001]  # the job's own config is left as it was
