"""The cohort sweeper: grid points into cohort jobs (benchmark/sweep/cohort_sweep.py), the Hydra plugin around
it (hydra_plugins/cohort_sweeper/), its checks, and real multiruns through it (tests/sweeper_app.py
records the jobs Hydra launched; no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from benchmark.core.config import ConfigError
from benchmark.job.members import member_points, members_override, parse, render, written_members
from benchmark.sweep.cohort_sweep import SWEEPER_TARGET, group_jobs, groups, job_numbers

from helpers import ROOT, run

AXES = ["seed", "train.lr"]


def basic_jobs(*overrides: str) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches for these overrides, in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(list(overrides)), None)[0]


def members_of(job: list[str]) -> list[dict]:
    """The members of a cohort job, read back through Hydra's parser (what the job's config holds)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_override(job[-1])
    assert o.key_or_group == "cohort.members"
    return OmegaConf.to_container(OmegaConf.create({"m": o.value()}), resolve=True)["m"]


def points_of(job: list[str]) -> list[list[str]]:
    """The grid points of a cohort job's members, as the job rebuilds them."""
    return member_points(job, written_members(job))


# --- grouping -----------------------------------------------------------------------------------


def test_points_differing_only_in_the_axes_are_one_job_in_hydras_order():
    jobs = basic_jobs("seed=0,1,2", "train.lr=0.1,0.2", "reg=none,bn")
    grouped = group_jobs(jobs, AXES)
    assert len(jobs) == 12 and len(grouped) == 2
    for g, reg in zip(grouped, ["none", "bn"]):
        assert g[:-1] == ["seed=0", "train.lr=0.1", f"reg={reg}"]  # the first member's overrides
        assert points_of(g) == [j for j in jobs if f"reg={reg}" in j]
        assert members_of(g)[:2] == [{"seed": 0, "train": {"lr": 0.1}}, {"seed": 0, "train": {"lr": 0.2}}]
    assert job_numbers(jobs, AXES) == [0, 1] * 6


def test_groups_follow_their_first_point_and_other_axes_stay_jobs():
    jobs = basic_jobs("reg=none,bn", "seed=0,1", "task.seq_len=6,10")
    grouped = group_jobs(jobs, ["seed"])
    assert [g[:-1] for g in grouped] == [
        ["reg=none", "seed=0", "task.seq_len=6"],
        ["reg=none", "seed=0", "task.seq_len=10"],
        ["reg=bn", "seed=0", "task.seq_len=6"],
        ["reg=bn", "seed=0", "task.seq_len=10"],
    ]
    assert all(members_of(g) == [{"seed": 0}, {"seed": 1}] for g in grouped)
    assert job_numbers(jobs, ["seed"]) == [0, 1, 0, 1, 2, 3, 2, 3]


def test_a_point_alone_in_its_group_is_unchanged():
    jobs = basic_jobs("reg=none,bn", "seed=3", "train.lr=0.1")  # the axes set, not swept
    assert group_jobs(jobs, AXES) == jobs
    jobs = basic_jobs("reg=none,bn", "task.seq_len=6,10")  # the axes not named at all
    assert group_jobs(jobs, AXES) == jobs


def test_no_axes_no_grouping():
    jobs = basic_jobs("seed=0,1,2", "train.lr=0.1,0.2")
    assert group_jobs(jobs, []) == jobs
    assert job_numbers(jobs, []) == list(range(6))


def test_an_axis_set_but_not_swept_is_in_every_member():
    grouped = group_jobs(basic_jobs("seed=0,1", "train.lr=0.03"), AXES)
    assert grouped[0][:-1] == ["seed=0", "train.lr=0.03"]
    assert members_of(grouped[0]) == [{"seed": 0, "train": {"lr": 0.03}}, {"seed": 1, "train": {"lr": 0.03}}]


@pytest.mark.parametrize(
    "overrides, axes",
    [
        (("reg=none,bn", "seed=0,1,2", "train.lr=0.1,0.2"), AXES),
        (("seed=0,1", "task.seq_len=6,10", "reg=bn"), ["seed"]),
        (("train.lr=0.03", "seed=5,6", "task.name='a b'"), AXES),  # an axis set but not swept; a quoted value
        (("seed=0,1", "train.lr=1e-2,1e-5,-3,2.50", "name='a b',a\\ b,'1',\"it's\""), [*AXES, "name"]),
    ],
)
def test_each_member_reads_back_as_the_grid_point_hydra_would_have_launched(overrides, axes):
    jobs = basic_jobs(*overrides)
    for launched, group in zip(group_jobs(jobs, axes), groups(jobs, axes)):
        points = points_of(launched) if len(group) > 1 else [launched]
        assert points == [jobs[i] for i in group]


def test_a_point_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="distinct grid points.*seed=0 reg=bn would be trained twice"):
        group_jobs(basic_jobs("seed=0,0", "reg=bn"), AXES)


# --- values -------------------------------------------------------------------------------------

# Awkward values of a string axis (`sweep`, a plain string of the config) as typed on a command line: spaces,
# quotes, backslashes, an interpolation, an escaped one, a number in quotes, characters the grammar escapes.
AWKWARD = [
    "'a b'",
    '"it\'s"',
    "'a\\'b'",
    "'C:\\dir\\\\'",
    "'${seed}'",
    "\\${seed}",
    "'\\${x}'",
    "$\\{oc.env:HOME\\}",
    "a\\ b\\,c\\=d",
    "'1'",
    "'null'",
]


@pytest.mark.parametrize("text", AWKWARD + ["-3", "1e-05", "1e-5", "-0.5", "2.50", "inf", "null", "true", "0"])
def test_a_value_renders_back_as_hydras_basic_sweeper_wrote_it(text):
    (job,) = basic_jobs(f"k={text}")  # the basic sweeper's text: 1e-5 -> 1e-05, 2.50 -> 2.5, quotes kept
    assert render(parse(job[0].split("=", 1)[1])) == job[0].split("=", 1)[1]
    (member,) = points_of(["seed=0", job[0], members_override([[job[0]]])])
    assert member == ["seed=0", job[0]]


def test_awkward_values_round_trip_exactly_into_each_members_config(compose):
    """Each member's config is its solo run's (interpolations unresolved and resolved), and its grid point the
    overrides Hydra's basic sweeper would have launched it with, to the character."""
    from benchmark.job.prepare import member_configs

    axes = "cohort.axes=[seed,train.lr,sweep]"
    jobs = basic_jobs("seed=-3,7", "train.lr=1e-5,0.01", "sweep=" + ",".join(AWKWARD))
    (launched,) = group_jobs(jobs, ["seed", "train.lr", "sweep"])
    assert points_of(launched) == jobs
    members = member_configs(compose(axes, *launched))
    assert len(members) == len(jobs) == 2 * 2 * len(AWKWARD)
    for member, point in zip(members, jobs):
        solo = compose(axes, *point)
        for resolve in (False, True):
            assert OmegaConf.to_container(member, resolve=resolve) == OmegaConf.to_container(solo, resolve=resolve)
    assert [m.sweep for m in members[:5]] == ["a b", "it's", "a'b", "C:\\dir\\", "-3"]


def test_floats_survive_the_round_trip_into_the_jobs_config(compose):
    """The cohort job composes with its first member's values; each member is a mapping of its own."""
    (job,) = group_jobs(basic_jobs("seed=0,1", "train.lr=0.01,1e-3"), AXES)
    cfg = compose(*job)
    assert cfg.seed == 0 and cfg.train.lr == 0.01
    members = OmegaConf.to_container(cfg.cohort.members)
    assert members == [{"seed": s, "train": {"lr": lr}} for s in (0, 1) for lr in (0.01, 0.001)]
    assert isinstance(members[1]["train"]["lr"], float) and isinstance(members[1]["seed"], int)


# --- the plugin ---------------------------------------------------------------------------------


def test_hydra_finds_the_sweeper_and_it_is_the_default(compose):
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.cohort_sweeper.cohort_sweeper import CohortSweeper

    assert f"{CohortSweeper.__module__}.{CohortSweeper.__name__}" == SWEEPER_TARGET
    assert CohortSweeper in Plugins.instance().discover(Sweeper)  # Hydra's own scan of hydra_plugins
    h = compose(hydra_config=True).hydra
    assert h.sweeper._target_ == SWEEPER_TARGET and h.sweeper.max_batch_size is None
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()  # a namespace package, shared with other plugins


@pytest.mark.parametrize(
    "axes, why",
    [
        ("[reg]", "config group"),
        ("[seed,cell]", "config group"),
        ("[train]", "config group"),
        ("[task.seq_len,hydra.job.name]", "config group or not a setting"),
        ("[cohort.mode]", "not a setting"),
        ("[seeds]", "not a key of the config"),
        ("[timing]", "config node"),
        ("[seed,seed]", "each once"),
    ],
)
def test_axes_that_are_not_plain_keys_are_refused(compose, axes, why):
    from hydra_plugins.cohort_sweeper.cohort_sweeper import axes_of, check_axes

    cfg = compose(f"cohort.axes={axes}", hydra_config=True)
    with pytest.raises(ConfigError, match=why) as e:
        check_axes(axes_of(cfg), cfg, set(cfg.hydra.runtime.choices))
    assert e.value.key == "cohort.axes" and "plain config keys such as seed, train.lr" in str(e.value)


def test_plain_axes_pass(compose):
    from hydra_plugins.cohort_sweeper.cohort_sweeper import axes_of, check_axes

    cfg = compose("cohort.axes=[seed,train.lr,task.seq_len]", hydra_config=True)
    assert check_axes(axes_of(cfg), cfg, set(cfg.hydra.runtime.choices)) == ["seed", "train.lr", "task.seq_len"]


def sweeper_for(*args: str):
    """The cohort sweeper set up in-process as Hydra sets it up for `python -m benchmark.run --multirun args`,
    and a function that splits the multirun into its jobs as its `sweep` does (composing and checking each
    one); nothing is launched."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import HydraContext, RunMode
    from hydra.utils import instantiate

    from benchmark.core.config import register_configs

    register_configs()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(ROOT / "conf")))
    cfg = loader.load_configuration("config", overrides=list(args), run_mode=RunMode.MULTIRUN)
    sweeper = instantiate(cfg.hydra.sweeper)
    ctx = HydraContext(config_loader=loader, callbacks=Callbacks(cfg))
    sweeper.setup(hydra_context=ctx, task_function=lambda c: None, config=cfg)
    parser = OverridesParser.create(config_loader=loader)
    return sweeper, lambda: sweeper.split_arguments(parser.parse_overrides(sweeper._parse_config() + list(args)), None)


@pytest.mark.parametrize("axes", ["[seed,nonexistent]", "[seed,train.lrr]", "[reg.dropout.pp]"])
def test_every_axis_is_checked_at_sweep_start_swept_or_not(tmp_path, axes, capsys):
    """A misspelt axis would group nothing (twice the jobs, no word): refused before any job, even when the
    multirun does not sweep it; an axis only some option of its group has (reg.dropout.p) is accepted."""
    with pytest.raises(SystemExit) as e:
        sweeper_for("+experiment=smoke", f"results_dir={tmp_path}", f"cohort.axes={axes}")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: invalid config: cohort.axes=") and "is not a key of the config" in err
    sweeper, _ = sweeper_for("+experiment=smoke", f"results_dir={tmp_path}", "cohort.axes=[seed,reg.dropout.p]")
    assert sweeper.axes == ["seed", "reg.dropout.p"]


def test_one_bad_point_fails_the_multirun_at_composition_before_any_job(tmp_path):
    """`task.seq_len=6,0`: every job is composed and checked as it checks itself (`benchmark.run.prepare_job`)
    before the first is launched, so no sibling starts and none is killed mid-write."""
    _, split = sweeper_for("+experiment=smoke", f"results_dir={tmp_path}", "cell=rnn", "task.seq_len=6,0")
    with pytest.raises(ConfigError) as e:
        split()
    assert (e.value.key, e.value.value) == ("task.seq_len", 0) and not list(tmp_path.iterdir())
    _, split = sweeper_for(
        "+experiment=smoke", f"results_dir={tmp_path}", "cell=rnn", "reg=none", "+reg.bn.placement=input"
    )
    with pytest.raises(ConfigError, match="reg=none never reads reg.bn"):
        split()
    _, split = sweeper_for("+experiment=smoke", f"results_dir={tmp_path}", "cell=rnn", "task.seq_len=6,10")
    assert sum(len(b) for b in split()) == 8  # a good grid: its 8 cohort jobs


@pytest.mark.parametrize(
    "override, key",
    [
        ("cohort.members=[{seed:0},{seed:1}]", "cohort.members"),
        ("cohort.members=[]", "cohort.members"),
        ("cohort.axes=[seed],[]", "cohort.axes"),
        ("+seed=0,1", "cohort.axes"),
        ("~train.lr", "cohort.axes"),
    ],
)
def test_overrides_the_sweeper_refuses(override, key):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.cohort_sweeper.cohort_sweeper import check_overrides

    parsed = OverridesParser.create().parse_overrides(["reg=none,bn", override])
    with pytest.raises(ConfigError) as e:
        check_overrides(parsed, AXES, {"reg", "cell", "task"})
    assert e.value.key == key


# --- real multiruns -------------------------------------------------------------------------------


def multirun(results: Path, *overrides: str):
    app = str(ROOT / "tests" / "sweeper_app.py")
    return run([sys.executable, app, "--multirun", f"results_dir={results}", *overrides])


def launched(results: Path) -> list[dict]:
    return sorted((json.loads(x) for x in (results / "jobs.jsonl").read_text().splitlines()), key=lambda r: r["num"])


@pytest.mark.sweep
@pytest.mark.parametrize(
    "launcher",
    [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]],
    ids=["basic", "joblib", "submitit_local"],
)
def test_a_multirun_launches_one_job_per_cohort(tmp_path, launcher):
    p = multirun(tmp_path / "r", "seed=0,1,2", "train.lr=0.1,0.2", "reg=none,bn", *launcher)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = launched(tmp_path / "r")
    assert [(r["num"], r["reg"], r["seed"], r["lr"]) for r in rows] == [(0, "none", 0, 0.1), (1, "bn", 0, 0.1)]
    members = [{"seed": s, "train": {"lr": lr}} for s in (0, 1, 2) for lr in (0.1, 0.2)]
    assert all(r["members"] == members for r in rows)
    assert sum(len(r["members"]) for r in rows) == 6 * 2


@pytest.mark.sweep
def test_max_batch_size_batches_cohorts_and_axes_off_launches_every_point(tmp_path):
    p = multirun(tmp_path / "a", "seed=0,1", "reg=none,bn,dropout", "hydra.sweeper.max_batch_size=2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert [(r["num"], r["reg"], len(r["members"])) for r in launched(tmp_path / "a")] == [
        (0, "none", 2),
        (1, "bn", 2),
        (2, "dropout", 2),
    ]
    log = (tmp_path / "a" / "single" / "hydra" / "multirun.log").read_text()  # Hydra's job listing, off the terminal
    assert log.count("Launching") == 2 and "Launching" not in p.stdout + p.stderr  # two batches: 2 cohorts, then 1
    p = multirun(tmp_path / "b", "seed=0,1", "reg=none,bn", "cohort.axes=[]")
    assert p.returncode == 0, p.stderr[-3000:]
    assert [(r["seed"], r["reg"], r["members"]) for r in launched(tmp_path / "b")] == [
        (0, "none", []),
        (0, "bn", []),
        (1, "none", []),
        (1, "bn", []),
    ]


@pytest.mark.sweep
def test_bad_axes_fail_before_any_job(tmp_path):
    p = multirun(tmp_path / "r", "seed=0,1", "reg=none,bn", "cohort.axes=[seed,reg]")
    assert p.returncode == 2
    assert "error: invalid config: cohort.axes=['seed', 'reg']" in p.stderr and "config group" in p.stderr
    assert not (tmp_path / "r" / "jobs.jsonl").exists()
    p = multirun(tmp_path / "r", "seed=0,1", "cohort.members=[{seed:0}]")
    assert p.returncode == 2 and "error: invalid config: cohort.members=" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "r" / "jobs.jsonl").exists()


@pytest.mark.sweep
def test_axes_set_by_a_swept_group_are_refused(tmp_path):
    """Grouping uses one `cohort.axes` for the multirun; a swept experiment that sets others would be misgrouped."""
    conf = tmp_path / "conf" / "axes_exp"
    conf.mkdir(parents=True)
    (conf / "seed_only.yaml").write_text("# @package _global_\ncohort:\n  axes: [seed]\n")
    (conf / "plain.yaml").write_text("# @package _global_\n{}\n")
    p = multirun(
        tmp_path / "r", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+axes_exp=plain,seed_only", "seed=0,1"
    )
    assert p.returncode == 2
    assert "cohort.axes" in p.stderr and "one value for the whole multirun" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "r" / "jobs.jsonl").exists()


@pytest.mark.sweep
def test_status_and_progress_count_members_not_jobs(tmp_path):
    """`make status`, the progress bar and the report's missing points expand the user's grid: 12 points in
    2 cohort jobs are 12 points, each numbered by the job that trains it, each with its solo run id."""
    from benchmark.sweep import progress, status

    results = tmp_path / "r"
    p = multirun(results, "seed=0,1,2", "train.lr=0.1,0.2", "reg=none,bn", "sweep=grid")
    assert p.returncode == 0, p.stderr[-3000:]
    sweep_dir = results / "grid"
    points = status.grid(sweep_dir)
    assert len(points) == 12 and len({pt.run_id for pt in points}) == 12
    for row in launched(results):  # the points of job n are its members
        labels = [pt.label for pt in points if pt.num == row["num"]]
        assert labels == [f"seed={m['seed']} train.lr={m['train']['lr']} reg={row['reg']}" for m in row["members"]]

    assert len(status.missing_points(sweep_dir)) == 12  # nothing trained: every point missing, none dropped
    assert progress.Watcher(sweep_dir, None, 0.0).poll().total == 12
    solo = tmp_path / "solo"  # the same grid, one job per point: the same run ids
    p = multirun(solo, "seed=0,1,2", "train.lr=0.1,0.2", "reg=none,bn", "sweep=grid", "cohort.axes=[]")
    assert p.returncode == 0, p.stderr[-3000:]
    solo_points = status.grid(solo / "grid")
    assert [pt.num for pt in solo_points] == list(range(12))
    assert [pt.run_id for pt in solo_points] == [pt.run_id for pt in points]


@pytest.mark.sweep
def test_an_axis_that_every_swept_arm_brings_is_a_cohort_axis(tmp_path):
    """reg.dropout.p is no key of the primary config (reg=none) but of every job (reg=dropout, both): the
    points of each arm are one cohort; a job whose arm lacks the key fails the multirun before any job."""
    axes = "cohort.axes=[seed,train.lr,reg.dropout.p]"
    p = multirun(tmp_path / "a", "reg=dropout,both", "reg.dropout.p=0.1,0.5", "seed=0,1", axes)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [(r["reg"], len(r["members"])) for r in launched(tmp_path / "a")] == [("dropout", 4), ("both", 4)]
    p = multirun(tmp_path / "b", "reg=dropout,none", "reg.dropout.p=0.1,0.5", "seed=0", axes)
    assert p.returncode != 0 and "reg.dropout.p" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "b" / "jobs.jsonl").exists()
