"""The config search path the tools read without Hydra (benchmark/core/confpath.py) is the one Hydra searches:
the same file wins where a name is in several folders, and the override forms Hydra accepts but does not search
are refused. Every precedence claim is checked against Hydra's own compose API."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from benchmark.core import confpath
from benchmark.core.config import ConfigError, register_configs

from helpers import CONF


def experiment(folder: Path, name: str, hidden: int) -> Path:
    """experiment/<name>.yaml in `folder` that sets hidden_size: which file Hydra used shows in the config."""
    path = folder / "experiment" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# @package _global_\nhidden_size: {hidden}\n")
    return path


def hydra_hidden(*overrides: str) -> int:
    """hidden_size of the config Hydra composes from the package's conf/ with `overrides`."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return int(compose(config_name="config", overrides=list(overrides)).hidden_size)


def hidden_of(path: Path) -> int:
    return int(yaml.safe_load(path.read_text())["hidden_size"])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two users' conf folders: `mine` in both (a: 11, b: 22), `smoke` (the package's too) in a, `only_b` in b."""
    a, b = tmp_path / "a" / "conf", tmp_path / "b" / "conf"
    experiment(a, "mine", 11), experiment(b, "mine", 22)
    experiment(a, "smoke", 99), experiment(b, "only_b", 33)
    return a, b


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_the_file_found_is_the_one_hydra_composes(folders, order):
    """The package's conf/ first (a user's smoke.yaml does not replace the package's), then the entries in order."""
    a, b = folders if order == "ab" else folders[::-1]
    over = f"hydra.searchpath=[file://{a},file://{b}]"
    search = confpath.from_overrides([over])
    for name in ("mine", "smoke", "only_b"):
        found = search.find("experiment", name)
        assert hidden_of(found) == hydra_hidden(over, f"+experiment={name}")
    assert search.find("experiment", "mine").parent.parent == a  # the first entry's
    assert search.find("experiment", "smoke") == CONF / "experiment" / "smoke.yaml"  # the package's
    assert {"mine", "only_b", "smoke", "claims_cpu"} <= set(search.options("experiment"))


def test_a_pkg_entry_and_a_relative_folder_are_searched_where_hydra_searches(folders, tmp_path, monkeypatch):
    a, _ = folders
    pkg = tmp_path / "site" / "my_study"
    experiment(pkg / "conf", "mine", 44)
    (pkg / "__init__.py").write_text("")
    (pkg / "conf" / "__init__.py").write_text("")  # a package, as Hydra's pkg:// source expects
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path / "a")  # `conf` is a's, from the working directory, as Hydra reads it
    for over in ("hydra.searchpath=[pkg://my_study.conf,conf]", "hydra.searchpath=[conf,pkg://my_study/conf]"):
        found = confpath.from_overrides([over]).find("experiment", "mine")
        assert hidden_of(found) == hydra_hidden(over, "+experiment=mine") == (44 if "[pkg" in over else 11)


@pytest.mark.parametrize(
    "forms",
    [
        ["+hydra.searchpath=[{b}]"],
        ["++hydra.searchpath=[{b}]"],
        ["hydra.searchpath=[{a}]", "hydra.searchpath=[{b}]"],
    ],
    ids=["plus", "plus-plus", "two-lists"],
)
def test_forms_hydra_accepts_but_does_not_search_are_refused(folders, forms):
    """Hydra finds nothing in `only_b`'s folder given these forms; the tools refuse them with one clear error."""
    a, b = folders
    overrides = [f.format(a=f"file://{a}", b=f"file://{b}") for f in forms]
    with pytest.raises(MissingConfigException):
        hydra_hidden(*overrides, "+experiment=only_b")
    with pytest.raises(ConfigError, match=r"hydra\.searchpath"):
        confpath.from_overrides(overrides)


@pytest.mark.parametrize(
    "override, why",
    [
        ("hydra.searchpath=file:///tmp", "a list of strings"),
        ("hydra.searchpath=[s3://bucket/conf]", "unknown scheme 's3'"),
        ("hydra.searchpath=[file:///no/such/folder]", "/no/such/folder is not a folder"),
        ("hydra.searchpath=[pkg://no_such_package_here.conf]", "not an importable package"),
        ("hydra.searchpath=[a,", "hydra.searchpath"),
    ],
)
def test_bad_entries_name_hydra_searchpath_and_the_forms(override, why):
    with pytest.raises(ConfigError, match=r"hydra\.searchpath=.*allowed: one override hydra\.searchpath=\[") as e:
        confpath.from_overrides(["cell=gru", override])
    assert why in str(e.value)


def test_without_a_searchpath_it_is_the_package_alone():
    assert confpath.from_overrides(["cell=gru", "+experiment=smoke"]) == confpath.PACKAGE
    assert confpath.PACKAGE.folders == (CONF,) and confpath.PACKAGE.overrides() == []
    with pytest.raises(ConfigError, match=r"regime='nope'.*claims_adding"):
        confpath.PACKAGE.require("regime", "nope", "regime")


def test_stage_and_user_lists_travel_as_one_override_that_hydra_reads_back(tmp_path):
    """Hydra searches only the first list: a protocol stage's design folder and the user's folders are joined
    (in order, quoted where needed), the other overrides kept in place."""
    odd = tmp_path / "my study, v2" / "conf"
    odd.mkdir(parents=True)
    stage = ["hydra.searchpath=[file:///r/plan/tune]", "design=t_a,t_b"]
    user = ["cell=gru", f"hydra.searchpath=['file://{odd}',pkg://x.conf]", "seed=0"]
    out = confpath.merged([*stage, *user])
    assert out[1:] == ["design=t_a,t_b", "cell=gru", "seed=0"]
    assert confpath.entries_of(out[0]) == ("file:///r/plan/tune", f"file://{odd}", "pkg://x.conf")
    assert confpath.merged(user) == user  # one list: as given
