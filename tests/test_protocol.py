"""The claims protocol (benchmark/sweep/protocol.py): tuning designs that Hydra composes, selection
on the tuning seeds only, confirmation designs at the chosen settings for every length."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import benchmark.run  # noqa: F401  (registers the run schema)
from benchmark.analysis import aggregate, comparisons
from benchmark.core.config import ConfigError
from benchmark.sweep import protocol

from synthetic_runs import make_run

CONF = Path(__file__).resolve().parents[1] / "conf"


def small() -> protocol.Protocol:
    return protocol.parse(
        {
            "tuning_seeds": [100, 101],
            "confirmation_seeds": list(range(5)),
            "lr": [0.01, 0.03],
            "dropout_p": [0.1, 0.5],
            "cells": ["lstm"],
            "regs": ["none", "dropout"],
            "regimes": {
                "claims_digits": {"lengths": [64, 128]},
                "claims_adding": {"lengths": [100], "regs": ["none"], "steps": {"lstm": 700}},
            },
        }
    )


def overrides(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split())


def test_the_experiments_protocols_parse_and_keep_their_promises():
    full = protocol.load("claims")
    assert len(full.confirmation_seeds) >= 10 and not set(full.tuning_seeds) & set(full.confirmation_seeds)
    assert set(full.cells) == {"rnn", "lstm", "gru"} and set(full.regs) == {"none", "bn", "dropout", "both"}
    assert full.dropout_p == (0.1, 0.25, 0.5)
    assert all(len(r.lengths) >= 2 for r in full.regimes) and max(max(r.lengths) for r in full.regimes) >= 100
    cpu = protocol.load("claims_cpu")
    assert len(cpu.confirmation_seeds) >= 10
    assert protocol.load("smoke") is None


def test_seed_sets_must_be_disjoint():
    with pytest.raises(ConfigError, match="protocol.confirmation_seeds"):
        protocol.parse(
            {
                "tuning_seeds": [1, 2],
                "confirmation_seeds": [2, 3],
                "lr": [0.1],
                "cells": ["lstm"],
                "regs": ["none"],
                "regimes": {"claims_digits": {"lengths": [64]}},
            }
        )


def test_tuning_designs_compose_with_hydra_at_the_first_length(tmp_path):
    plain, dropping = (overrides(line) for line in protocol.tune(small(), tmp_path))
    assert plain["design"].split(",") == ["t_claims_adding_lstm_none", "t_claims_digits_lstm_none"]
    assert dropping["design"] == "t_claims_digits_lstm_dropout"  # its p swept, a cohort axis of the experiment
    assert dropping["reg.dropout.p"] == "0.1,0.5" and "reg.dropout.p" not in plain
    for o in (plain, dropping):
        assert o["seed"] == "100,101" and o["train.lr"] == "0.01,0.03"
    search = plain["hydra.searchpath"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        c = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={search}",
                "design=t_claims_digits_lstm_dropout",
                "reg.dropout.p=0.5",
                "seed=100",
            ],
        )
        a = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={search}",
                "design=t_claims_adding_lstm_none",
                "seed=101",
            ],
        )
    assert (c.task.name, c.task.seq_len, c.cell.name, c.reg.name, c.reg.dropout.p) == (
        "digits",
        64,
        "lstm",
        "dropout",
        0.5,
    )
    assert c.task.data_seed == 100  # each replicate draws its own split
    assert (a.task.name, a.task.seq_len, a.train.steps) == ("adding", 100, 700)  # the shorter budget


def tuning_runs(sweep: Path, proto: protocol.Protocol) -> None:
    """Every tuning run; on digits dropout p=0.1 at lr 0.03 validates best, none best at 0.01."""
    for rg in proto.regimes:
        task = "digits" if "digits" in rg.name else "adding"
        for reg in rg.regs:
            for p in proto.dropout_p if reg == "dropout" else (None,):
                for lr in proto.lr:
                    for s in proto.tuning_seeds:
                        good = (reg == "dropout" and p == 0.1 and lr == 0.03) or (reg == "none" and lr == 0.01)
                        make_run(
                            sweep,
                            cell="lstm",
                            reg=reg,
                            task=task,
                            seq_len=rg.lengths[0],
                            seed=s,
                            lr=lr,
                            val_score=0.8 if good else 0.5,
                            dropout_p=p,
                        )


def test_confirmation_runs_only_the_chosen_settings_at_every_length(tmp_path):
    proto, sweep = small(), tmp_path / "claims"
    partial = tmp_path / "partial"
    make_run(partial, cell="lstm", reg="none", task="digits", seq_len=64, seed=100, lr=0.01)
    with pytest.raises(ConfigError, match="tuning runs"):
        protocol.confirm(proto, partial)  # tuning unfinished: refused
    tuning_runs(sweep, proto)
    o = overrides(protocol.confirm(proto, sweep))
    assert o["seed"] == "0,1,2,3,4" and "train.lr" not in o
    assert sorted(o["design"].split(",")) == sorted(
        [
            "c_claims_digits_T64_lstm_none",
            "c_claims_digits_T128_lstm_none",
            "c_claims_digits_T64_lstm_dropout",
            "c_claims_digits_T128_lstm_dropout",
            "c_claims_adding_T100_lstm_none",
        ]
    )
    chosen = pd.read_csv(sweep / "plan" / "chosen.csv")
    drop = chosen[(chosen["task"] == "digits") & (chosen["reg"] == "dropout")].iloc[0]
    assert (drop["lr"], drop["dropout_p"]) == (0.03, 0.1)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        c = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={o['hydra.searchpath']}",
                "design=c_claims_digits_T128_lstm_dropout",
                "seed=3",
            ],
        )
    assert (c.task.seq_len, c.train.lr, c.reg.dropout.p, c.task.data_seed) == (128, 0.03, 0.1, 3)
    assert protocol.confirm(proto, sweep) == protocol.confirm(proto, sweep)  # deterministic: a rerun resumes


def test_rate_grid_arms_run_every_rate_on_the_confirmation_seeds_without_entering_selection(tmp_path):
    """Claim (f) needs the rate grid on seeds that selected nothing: `rate_grid_arms` adds the other rates
    at the first length; selection (chosen.csv) and the verdicts' runs (comparisons.select) ignore them."""
    block = {**vars(small()), "regimes": {"claims_digits": {"lengths": [64, 128]}}}
    proto = protocol.parse({**block, "rate_grid_arms": ["none"], "regimes": {"claims_digits": {"lengths": [64, 128]}}})
    sweep = tmp_path / "claims"
    tuning_runs(sweep, proto)
    designs = overrides(protocol.confirm(proto, sweep))["design"].split(",")
    assert "c_claims_digits_T64_lstm_none_lr0.03" in designs  # none chose 0.01: 0.03 added at T=64 only
    assert not [d for d in designs if "_lr" in d and ("dropout" in d or "T128" in d)]
    for lr in proto.lr:  # the confirmation seeds at both rates
        for s in proto.confirmation_seeds:
            make_run(sweep, cell="lstm", reg="none", task="digits", seq_len=64, seed=s, lr=lr)
    done = comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary)
    used = comparisons.select(done, proto.tuning_seeds)
    assert set(used["lr"]) == {0.01} and set(used["seed"]) == set(proto.confirmation_seeds)
    with pytest.raises(ConfigError, match="protocol.rate_grid_arms"):
        protocol.parse({**block, "rate_grid_arms": ["bn"]})
