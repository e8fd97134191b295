"""Run ids stay what they were: a results folder made before a refactor is still found complete after it.

Recorded at commit 1e16180 (before the package was laid out by layer) with
`benchmark.run.prepare(compose(...)).run_id`, and for a cohort's members with `member_configs`: every cell x
none/bn/dropout/both at smoke size, the other arms, a few settings off their defaults, another task and accel.
The ids of the built-in arms before they became plugins: test_arm_plugins.py.
"""

from __future__ import annotations

from benchmark.job.prepare import member_configs, prepare

from helpers import compose, hydra_held

PINNED = {
    "+experiment=smoke cell=rnn reg=none task.seq_len=6 seed=0": "244279eb7e97",
    "+experiment=smoke cell=rnn reg=bn task.seq_len=6 seed=0": "17d89bb5d184",
    "+experiment=smoke cell=rnn reg=dropout task.seq_len=6 seed=0": "285230b73364",
    "+experiment=smoke cell=rnn reg=both task.seq_len=6 seed=0": "3143e2fc2194",
    "+experiment=smoke cell=lstm reg=none task.seq_len=6 seed=0": "4c292eba4c29",
    "+experiment=smoke cell=lstm reg=bn task.seq_len=6 seed=0": "ce49a1954f0a",
    "+experiment=smoke cell=lstm reg=dropout task.seq_len=6 seed=0": "996c68c5bc6f",
    "+experiment=smoke cell=lstm reg=both task.seq_len=6 seed=0": "7079d60f89b2",
    "+experiment=smoke cell=gru reg=none task.seq_len=6 seed=0": "71c7be57ef55",
    "+experiment=smoke cell=gru reg=bn task.seq_len=6 seed=0": "7b0343f3e18d",
    "+experiment=smoke cell=gru reg=dropout task.seq_len=6 seed=0": "ebc7941da3ac",
    "+experiment=smoke cell=gru reg=both task.seq_len=6 seed=0": "7e3627f408bd",
    "+experiment=smoke cell=lstm reg=ln task.seq_len=10 seed=1": "c8ac6b8bb50f",
    "+experiment=smoke cell=gru reg=zoneout task.seq_len=10 seed=1": "e2230a65a2e7",
    "+experiment=smoke cell=rnn reg=weightdrop task.seq_len=10 seed=1": "09b4a61f003e",
    "+experiment=smoke cell=lstm reg=bn reg.bn.placement=input train.lr=0.03 seed=1 task.seq_len=10": "8d3b44d70cc8",
    "+experiment=smoke cell=gru reg=dropout reg.dropout.placement=variational reg.dropout.p=0.5 task.seq_len=10": (
        "a9d1783e7d07"
    ),
    "cell=lstm reg=both task=digits": "53ffab33334f",
    "cell=gru reg=bn accel=compile task.seq_len=20": "f84117bfe19b",
}
# A cohort job of two members: each has its solo run's id (the first is the lstm-bn point above).
JOB = ["+experiment=smoke", "cell=lstm", "reg=bn", "task.seq_len=6"]
MEMBERS = "cohort.members=[{seed:0,train:{lr:0.01}},{seed:1,train:{lr:0.03}}]"
MEMBER_IDS = ["ce49a1954f0a", "388f94f30694"]


def test_run_ids_of_the_pinned_configs_are_unchanged():
    with hydra_held():
        got = {overrides: prepare(compose(*overrides.split())).run_id for overrides in PINNED}
    assert got == PINNED


def test_a_cohort_members_run_ids_are_unchanged():
    with hydra_held():
        ids = [prepare(c).run_id for c in member_configs(compose(*JOB, MEMBERS))]
    assert ids == MEMBER_IDS


def test_a_member_has_its_solo_runs_id():
    with hydra_held():
        solo = prepare(compose(*JOB, "seed=1", "train.lr=0.03")).run_id
    assert solo == MEMBER_IDS[1]
