"""Where a config is found: the package's conf/ and the user's `hydra.searchpath`, in Hydra's order.

The tools that read config files without composing them (the claims protocol, `make sweep`'s checks, the
cost estimate, the variant registry) must find the file a run's Hydra finds, or a user's experiment kept in
their own folder (`hydra.searchpath=[file://$PWD/conf]`) could be run but not planned. Hydra 1.3 searches,
for `<group>/<name>.yaml`:

1. its own configs (`pkg://hydra.conf`: only the `hydra/` groups, which these tools never read);
2. the primary config's folder: the package's conf/;
3. each entry of `hydra.searchpath`, in the order given (`file://<folder>`, `pkg://<package>`, `<folder>`;
   relative folders from the working directory);

and the first folder that holds the file wins: a user's `regime/claims_adding.yaml` does not replace the
package's, a new name is found in the user's folder. Hydra reads the search path from the first plain
`hydra.searchpath=[...]` override only: a second one, `+hydra.searchpath` and `++hydra.searchpath` are
accepted on the command line but search nothing (tests/test_confpath.py checks all of this against
Hydra's compose API). `from_overrides` refuses those forms, so a sweep never plans from folders its runs
do not search.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from benchmark.core.config import ConfigError

PACKAGE_CONF = Path(__file__).resolve().parents[2] / "conf"
KEY = "hydra.searchpath"
FORMS = "one override hydra.searchpath=[<entry>,...] with entries file://<folder>, pkg://<package> or <folder>"
_PLAIN = re.compile(r"[\w/.:@+~-]+")  # an entry Hydra's grammar reads unquoted (else it is written quoted)
_ESCAPE = re.compile(r"(\\*)('|$)")  # backslashes before a quote or the end, and the quote


@dataclass(frozen=True)
class SearchPath:
    """Config folders in Hydra's precedence (the first that holds a file wins), and the user's entries as given.

    Attributes:
        folders: the package's conf/, then each `hydra.searchpath` entry's folder(s).
        entries: the `hydra.searchpath` entries as the user wrote them (passed on to the runs unchanged).
    """

    folders: tuple[Path, ...] = (PACKAGE_CONF,)
    entries: tuple[str, ...] = ()

    def find(self, group: str, name: str) -> Optional[Path]:
        """`<group>/<name>.yaml` (`group` "" for the primary config) in the first folder that holds it."""
        return next((p for f in self.folders if (p := f / group / f"{name}.yaml").is_file()), None)

    def options(self, group: str) -> list[str]:
        """Every name of `group` on the whole search path, sorted."""
        return sorted({p.stem for f in self.folders for p in (f / group).glob("*.yaml")})

    def require(self, group: str, name: str, key: str) -> Path:
        """The file of `name`; a ConfigError naming `key` and listing the group's options otherwise."""
        path = self.find(group, name)
        if path is None:
            raise ConfigError(key, name, f"one of {self.options(group)} (conf/{group}/ on the search path)")
        return path

    def load(self, group: str, name: str) -> Any:
        """The YAML of `name`, or None where no folder holds it."""
        path = self.find(group, name)
        return None if path is None else yaml.safe_load(path.read_text(encoding="utf-8"))

    def group_dirs(self, group: str) -> tuple[Path, ...]:
        """The folders of `group` that exist, in precedence order (e.g. every conf/reg/)."""
        return tuple(f / group for f in self.folders if (f / group).is_dir())

    def overrides(self) -> list[str]:
        """The override that gives a run this search path (none for the package's alone)."""
        return [as_override(self.entries)] if self.entries else []


PACKAGE = SearchPath()


def as_override(entries: Sequence[str]) -> str:
    """`hydra.searchpath=[...]` of `entries`, quoted where Hydra's grammar needs it."""

    def quoted(e: str) -> str:  # in Hydra's quotes a backslash escapes only a quote or another before one
        return e if _PLAIN.fullmatch(e) else "'" + _ESCAPE.sub(lambda m: m[1] * 2 + ("\\'" if m[2] else ""), e) + "'"

    return f"{KEY}=[{','.join(quoted(e) for e in entries)}]"


def _key(override: str) -> str:
    """The key an override sets, its prefix (`+`, `++`, `~`) kept: `+hydra.searchpath`."""
    return override.split("=", 1)[0].strip()


def searchpath_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that name `hydra.searchpath` in any form."""
    return [o for o in overrides if _key(o).lstrip("+~") == KEY]


def entries_of(override: str) -> tuple[str, ...]:
    """The entries of one plain `hydra.searchpath=[...]` override, parsed by Hydra's own grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if _key(override) != KEY:
        raise ConfigError(KEY, override, FORMS, "Hydra searches no folder of a +, ++ or ~ form")
    try:
        value = OverridesParser.create().parse_override(override).value()
    except HydraException as e:  # the grammar's errors (a parse error, an unclosed list)
        raise ConfigError(KEY, override, FORMS, str(e).splitlines()[0]) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(KEY, override, FORMS, "Hydra needs a list of strings")
    return tuple(value)


def folders_of(entry: str, cwd: Path) -> tuple[Path, ...]:
    """The folder(s) Hydra searches for one entry: a file:// or bare folder (from `cwd` when relative), or the
    folder(s) of a pkg:// package (a namespace package may have several)."""
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "file", entry
    if scheme == "file":
        folder = cwd / rest
        if not folder.is_dir():
            raise ConfigError(KEY, entry, FORMS, f"{folder} is not a folder")
        return (folder.resolve(),)
    if scheme == "pkg":
        name = rest.replace("/", ".").rstrip(".")
        try:
            spec, why = importlib.util.find_spec(name), "no package of that name"
        except (ImportError, ValueError) as e:  # a parent package that is not there
            spec, why = None, str(e)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(KEY, entry, FORMS, f"{name!r} is not an importable package (on PYTHONPATH?): {why}")
        return tuple(Path(p) for p in spec.submodule_search_locations)
    raise ConfigError(KEY, entry, FORMS, f"unknown scheme {scheme!r}")


def from_overrides(overrides: Sequence[str], cwd: Optional[Path] = None) -> SearchPath:
    """The search path a run given `overrides` composes from; ConfigError naming hydra.searchpath on a form
    that Hydra would accept but not search, on a second list, or on an entry that names no folder."""
    given = searchpath_overrides(overrides)
    if len(given) > 1:
        raise ConfigError(KEY, given, FORMS, "Hydra searches only the first: put every folder in one list")
    if not given:
        return PACKAGE
    entries = entries_of(given[0])
    here = Path.cwd() if cwd is None else cwd
    found = tuple(f for e in entries for f in folders_of(e, here))
    return SearchPath((PACKAGE_CONF, *found), entries)


def merged(overrides: Sequence[str]) -> list[str]:
    """`overrides` with every plain `hydra.searchpath=[...]` joined into one list, at the first one's place and
    in their order: Hydra searches only the first, so a protocol stage's design folder and the user's folders
    must travel as one override."""
    lists = [o for o in overrides if _key(o) == KEY]
    if len(lists) < 2:
        return list(overrides)
    joined = as_override([e for o in lists for e in entries_of(o)])
    first = overrides.index(lists[0])
    return [joined if i == first else o for i, o in enumerate(overrides) if i == first or o not in lists]
