"""Grid points into cohort jobs: the sweep side of cohorts (the plugin in hydra_plugins/cohort_sweeper/
calls it; Hydra's grammar only through benchmark/job/members.py).

Hydra's basic sweeper turns `seed=0,1,2 train.lr=0.01,0.03 reg=none,bn` into 12 jobs, each a list
of "key=value" overrides. `group_jobs` merges the jobs that differ only in the cohort axes
(`cohort.axes`, default seed and train.lr) into one job: here 2 jobs of 6 members each. A merged
job keeps its first member's overrides (so it composes with valid values) and adds
`cohort.members=[{seed:0,train:{lr:0.01}},...]`, one mapping of its axis values per member, in the
order Hydra would have launched them (benchmark/job/members.py); a job alone in its group stays exactly
as it was. `job_numbers` says which job trains each grid point (`make status`).
"""

from __future__ import annotations

from typing import Sequence

from benchmark.core.config import ConfigError
from benchmark.job.members import MEMBERS_KEY, key_of, members_override

AXES_KEY = "cohort.axes"
# The sweeper's class, as conf/hydra/sweeper/cohort.yaml names it (Hydra instantiates plugins only
# from the hydra_plugins namespace package).
SWEEPER_TARGET = "hydra_plugins.cohort_sweeper.cohort_sweeper.CohortSweeper"


def group_jobs(jobs: Sequence[Sequence[str]], axes: Sequence[str]) -> list[list[str]]:
    """The jobs to launch: jobs equal in every override but the axes' become one cohort job.

    Groups keep the order of their first job, members the order of their jobs; `axes=[]` or no
    axis swept leaves every job as it is. Two jobs with the same overrides would be one member
    twice (one run folder written twice): ConfigError.
    """
    out = []
    for group in groups(jobs, axes):
        members = [jobs[i] for i in group]
        out.append(list(members[0]) if len(members) == 1 else cohort_job(members, set(axes)))
    return out


def groups(jobs: Sequence[Sequence[str]], axes: Sequence[str]) -> list[list[int]]:
    """The indices of the jobs each launched job trains, in launch order (see `group_jobs`)."""
    axes = set(axes)
    by_shared: dict[tuple[str, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        by_shared.setdefault(tuple(o for o in job if key_of(o) not in axes), []).append(i)
    return list(by_shared.values())


def job_numbers(jobs: Sequence[Sequence[str]], axes: Sequence[str]) -> list[int]:
    """For each grid point (a job of the basic sweeper), the number of the job that trains it."""
    num = [0] * len(jobs)
    for n, group in enumerate(groups(jobs, axes)):
        for i in group:
            num[i] = n
    return num


def cohort_job(jobs: Sequence[Sequence[str]], axes: set[str]) -> list[str]:
    """One job for a group: its first job's overrides plus `cohort.members=[...]`."""
    members = [tuple(o for o in job if key_of(o) in axes) for job in jobs]
    seen: set[tuple[str, ...]] = set()
    for m in members:
        if m in seen:
            raise ConfigError(
                MEMBERS_KEY,
                " ".join(m),
                "distinct grid points (each value listed once on a swept axis)",
                f"The grid point {' '.join(jobs[0])} would be trained twice.",
            )
        seen.add(m)
    return [*jobs[0], members_override(members)]
