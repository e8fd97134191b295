"""A stand-in task for the cohort sweeper's tests: each job appends its overrides' cohort members
to a file (no training), so a multirun shows exactly which jobs the sweeper launched.

    python tests/sweeper_app.py --multirun results_dir=/tmp/r seed=0,1 train.lr=0.1,0.2   # -> /tmp/r/jobs.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from benchmark.core.config import register_configs

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register_configs()  # the run schema conf/config.yaml builds on


@hydra.main(config_path=CONF, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out = Path(cfg.results_dir) / "jobs.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "num": int(hc.job.num),
        "members": OmegaConf.to_container(cfg.cohort.members),
        "seed": cfg.seed,
        "lr": cfg.train.lr,
        "reg": cfg.reg.name,
        "overrides": list(hc.overrides.task),
    }
    with out.open("a", encoding="utf-8") as f:  # one short line: appends of parallel jobs do not interleave
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
