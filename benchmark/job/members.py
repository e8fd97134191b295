"""A cohort job's members in their text form, `cohort.members` (no Hydra, no torch here).

The cohort sweeper (benchmark/sweep/cohort_sweep.py) writes one "key=value key=value" string per member
(`members_override`); the job reads each back into its overrides (`member_overrides`) and its grid point
(`member_point`, the overrides Hydra's basic sweeper would have launched it with);
`benchmark.job.prepare.member_configs` applies them to the job's config.
"""

from __future__ import annotations

import re
from typing import Sequence

from benchmark.core.config import ConfigError

MEMBERS_KEY = "cohort.members"


def key_of(override: str) -> str:
    """The key of one "key=value" override as Hydra's sweeper writes it (a key holds no '=')."""
    return override.split("=", 1)[0]


def members_override(members: Sequence[str]) -> str:
    """`cohort.members=['seed=0 train.lr=0.01',...]` in Hydra's override grammar."""
    return f"{MEMBERS_KEY}=[{','.join(quote(m) for m in members)}]"


def quote(text: str) -> str:
    """`text` as a single-quoted value of Hydra's override grammar, read back as exactly `text`.

    Inside quotes Hydra unescapes only a backslash run before a quote or at the end, and the config
    reads `${` as an interpolation (a backslash run before it escaped likewise); so those runs are
    doubled, quotes and `${` escaped.
    """
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"


def member_overrides(member: str) -> list[str]:
    """A member string back into its "key=value" overrides: split at spaces neither quoted nor escaped."""
    out, cur, q, i = [], "", "", 0
    while i < len(member):
        c = member[i]
        if c == "\\" and i + 1 < len(member):  # an escaped character, quoted or not
            cur, i = cur + member[i : i + 2], i + 2
            continue
        if c in "'\"" and (not q or c == q):
            q = "" if q else c
        if c == " " and not q:
            out, cur = (out + [cur] if cur else out), ""
        else:
            cur += c
        i += 1
    if q:
        raise ConfigError(MEMBERS_KEY, member, "'key=value key=value' strings whose quotes are closed")
    return out + [cur] if cur else out


def member_point(job: Sequence[str], member: str) -> list[str]:
    """The grid point of one member of a launched job: the job's overrides without `cohort.members`, each
    cohort axis at the member's value, in the job's order (the list Hydra's basic sweeper would launch)."""
    mine = {key_of(o): o for o in member_overrides(member)}
    return [mine.get(key_of(o), o) for o in job if key_of(o) != MEMBERS_KEY]
