"""A cohort job's members as config values: `cohort.members=[{seed:0,train:{lr:0.01}},...]` (no torch here).

Each member is a mapping of its cohort axes' values, nested at the dots of their keys, so the job's config holds
it as a DictConfig that `benchmark.job.prepare.member_configs` merges into the job's config. The cohort sweeper
(benchmark/sweep/cohort_sweep.py) writes them from the overrides Hydra's basic sweeper made (`members_override`);
`member_points` rebuilds each member's grid point, the overrides the basic sweeper would have launched it with.
Both directions go through Hydra's own override grammar: values are parsed by its parser and written by the
function its basic sweeper writes them with (`render`), so a value reads back as the same text (0.01 stays 0.01,
`'a b'` keeps its quotes) and this project has no quoting rules of its own.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence

MEMBERS_KEY = "cohort.members"


def key_of(override: str) -> str:
    """The key of one "key=value" override as Hydra's sweeper writes it (a key holds no '=')."""
    return override.split("=", 1)[0]


@functools.lru_cache(maxsize=None)
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser  # lazy: history.py needs only key_of

    return OverridesParser.create()


def parse(text: str) -> Any:
    """The value of an override ("key=VALUE") as Hydra's grammar reads it, quoted strings still quoted
    (`QuotedString`), so that `render` writes it back as it was."""
    return _parser().parse_rule(text, "value")


def render(value: Any) -> str:
    """A value as Hydra's basic sweeper writes it after the '=' of an override (`Transformer.str`)."""
    from hydra.core.override_parser.types import Transformer

    return Transformer.str(value)


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"train.lr": v} -> {"train": {"lr": v}}: dotted keys as the config mapping they set."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flat(member: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The inverse of `nest`: each value (or empty mapping) of `member` by its dotted key."""
    out: dict[str, Any] = {}
    for key, value in member.items():
        if isinstance(value, Mapping) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def members_override(members: Sequence[Sequence[str]]) -> str:
    """`cohort.members=[{seed:0,train:{lr:0.01}},...]` from each member's axis overrides ("key=value", as the
    basic sweeper wrote them)."""
    values = [nest({key_of(o): parse(o.split("=", 1)[1]) for o in member}) for member in members]
    return f"{MEMBERS_KEY}={render(values)}"


def written_members(job: Sequence[str]) -> Optional[list[Any]]:
    """The members a launched job's `cohort.members=...` override holds, as parsed values; None without one."""
    text = next((o for o in job if key_of(o) == MEMBERS_KEY), None)
    return None if text is None else list(parse(text.split("=", 1)[1]))


def member_points(job: Sequence[str], members: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The grid point of each member of a launched job: the job's overrides without `cohort.members`, each
    cohort axis at the member's value, in the job's order (the list Hydra's basic sweeper would launch)."""
    rest = [o for o in job if key_of(o) != MEMBERS_KEY]
    points = []
    for member in members:
        mine = flat(member)
        points.append([f"{key_of(o)}={render(mine[key_of(o)])}" if key_of(o) in mine else o for o in rest])
    return points
