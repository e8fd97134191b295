"""The `literature` experiment composes into a valid run config and its reference values match its grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import benchmark as bm  # noqa: F401
from benchmark.arms import build_arm
from benchmark.core.config import ConfigError, RunConfig, register_configs, validate
from benchmark.core.io import run_id

from helpers import compose

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()


def composed(*overrides: str):
    return compose(*overrides)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(experiment):
    raw = composed(f"+experiment={experiment}")
    if raw.accel == "graph" and not torch.cuda.is_available():  # a GPU experiment: refused here, naming the key
        with pytest.raises(ConfigError, match="accel"):
            validate(OmegaConf.to_object(raw))
        raw = composed(f"+experiment={experiment}", "accel=none")
    cfg: RunConfig = validate(OmegaConf.to_object(raw))  # raises ConfigError
    assert cfg.sweep == experiment  # each experiment writes to results/<its own name>


@pytest.mark.parametrize("task", ["smnist", "pmnist"])
@pytest.mark.parametrize("reg", ["none", "bn"])
def test_literature_points_are_cooijmans_setup(task, reg):
    cfg: RunConfig = OmegaConf.to_object(composed("+experiment=literature", f"task={task}", f"reg={reg}"))
    validate(cfg)
    assert (cfg.hidden_size, cfg.train.lr, cfg.train.optimizer.value, cfg.train.batch_size) == (
        100,
        1e-3,
        "rmsprop",
        100,
    )
    assert cfg.task["seq_len"] == 784 and (cfg.task["n_train"], cfg.task["n_val"]) == (50000, 10000)
    assert cfg.reg["bn"]["placement"] == "recurrent" and cfg.reg["bn"]["gain_init"] == 0.1
    assert build_arm(cfg.reg).name == reg  # none keeps bn's block in its id only


def test_literature_values_are_the_papers_and_name_points_of_the_grid():
    raw = yaml.safe_load((CONF / "experiment" / "literature.yaml").read_text())
    grid = {k: str(v).split(",") for k, v in raw["hydra"]["sweeper"]["params"].items()}
    lit = raw["literature"]
    assert lit["metric"] == "test_accuracy" and "Cooijmans" in lit["source"]
    got = {(v["task"], v["reg"]): v["value"] for v in lit["values"]}
    assert got == {
        ("smnist", "none"): 0.989,
        ("smnist", "bn"): 0.990,
        ("pmnist", "none"): 0.902,
        ("pmnist", "bn"): 0.954,
    }
    for v in lit["values"]:
        assert v["task"] in grid["task"] and v["cell"] in grid["cell"] and v["reg"] in grid["reg"]


def test_reference_values_do_not_change_the_run_id():
    resolved = OmegaConf.to_container(composed("+experiment=literature", "task=adding"), resolve=True)
    assert run_id(resolved) == run_id({k: v for k, v in resolved.items() if k != "literature"})
