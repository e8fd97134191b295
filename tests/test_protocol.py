"""The claims protocol (benchmark/sweep/protocol.py): a design frozen and hashed before any run, confirmation
seeds derived from its hash, tuning designs at every length that Hydra composes, selection on the tuning seeds
only, confirmation designs at the chosen settings (every seed where a claim or control tests, a few elsewhere),
and claim (f)'s rate grid at its point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

import benchmark.run  # noqa: F401  (registers the run schema)
from benchmark.analysis import aggregate, comparisons
from benchmark.analysis import design as analysis_design
from benchmark.core import confpath
from benchmark.core.config import ConfigError
from benchmark.sweep import protocol

from helpers import PLUGIN, PLUGIN_SEARCHPATH
from synthetic_runs import make_run

CONF = Path(__file__).resolve().parents[1] / "conf"
ADD, CHARS = {"task": "adding", "seq_len": 30, "cell": "lstm"}, {"task": "chars", "seq_len": 50, "cell": "lstm"}
BLOCK = {
    "tuning_seeds": [100, 101],
    "confirmation_count": 5,
    "exploratory_count": 2,
    "retired_seeds": [0, 1],
    "lr": [0.01, 0.03],
    "dropout_p": [0.1, 0.5],
    "cells": ["lstm"],
    "regs": ["none", "dropout"],
    "regimes": {"claims_chars": {"lengths": [25, 50]}, "claims_adding": {"lengths": [30], "regs": ["none"]}},
    "rate_grid": {"regime": "claims_adding", "length": 30, "arms": ["none"], "lr": [0.003, 0.01, 0.03]},
    "claims": {"c": {"points": [CHARS], "margin": 0.02}, "h": {"needs": "claims_gpu", "why": "seeds"}},
    "controls": [{"name": "dropout_overfit", "claim": "c", "point": CHARS, "source": "Zaremba et al. 2014"}],
}


def design(block=None, experiment: str = "claims") -> protocol.Design:
    """A protocol frozen as `protocol.freeze` does, over a test block."""
    proto = protocol.parse(block or BLOCK)
    doc = protocol.design_of(experiment, proto)
    doc["config"] = {**doc["config"], "protocol": block or BLOCK}  # the test block is the experiment's
    digest = protocol.design_hash(doc)
    seeds = protocol.derive_seeds(digest, proto.confirmation_count, (*proto.tuning_seeds, *proto.retired_seeds))
    return protocol.Design(experiment, proto, doc, digest, seeds)


def overrides(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split())


def test_the_experiments_protocols_parse_and_keep_their_promises():
    for name in ("claims", "claims_cpu"):
        d = protocol.freeze(name)
        p = d.protocol
        assert len(d.confirmation_seeds) >= 20 and not set(d.confirmation_seeds) & set(p.tuning_seeds)
        assert not set(d.confirmation_seeds) & set(p.retired_seeds)  # no seed an earlier design used
        assert set(p.cells) == {"rnn", "lstm", "gru"} and set(p.regs) == {"none", "bn", "dropout", "both"}
        whole = [r for r in p.regimes if set(r.cells) == set(p.cells) and set(r.regs) == set(p.regs)]
        assert any(len(r.lengths) >= 2 for r in whole)  # the whole grid at two lengths or more
        assert set(p.claims) == set("abcdefgh")  # one declared primary test (or a reason) per claim
        assert {c["claim"] for c in p.controls} >= {"a", "c", "g"} and all(c["source"] for c in p.controls)
        assert p.rate_grid is not None and 5 <= len(p.rate_grid.lr) <= 7
        ratios = [b / a for a, b in zip(p.rate_grid.lr, p.rate_grid.lr[1:])]
        assert max(ratios) / min(ratios) < 1.12  # log-spaced (a 1-3-10 grid: steps within 10 %)
    assert protocol.load("smoke") is None


def test_confirmation_seeds_are_fresh_derived_from_the_hash_and_change_with_the_design():
    a, b = design(), design()
    assert a.hash == b.hash and a.confirmation_seeds == b.confirmation_seeds  # the same design, the same seeds
    assert len(set(a.confirmation_seeds)) == 5 and not set(a.confirmation_seeds) & {0, 1, 100, 101}
    changed = design({**BLOCK, "claims": {**BLOCK["claims"], "c": {"points": [CHARS], "margin": 0.03}}})
    assert changed.hash != a.hash and not set(changed.confirmation_seeds) & set(a.confirmation_seeds)
    assert (
        protocol.derive_seeds("abc", 3, avoid=protocol.derive_seeds("abc", 1, ()))
        == protocol.derive_seeds("abc", 4, ())[1:]
    )  # an avoided seed is skipped, the rest keep their order


def test_bad_blocks_name_the_key():
    bad = [
        ({"confirmation_count": 1}, "protocol.confirmation_count"),
        ({"exploratory_count": 9}, "protocol.exploratory_count"),
        ({"claims": {"z": {"points": [CHARS]}}}, "protocol.claims.z"),
        ({"claims": {"c": {"points": [{"task": "chars"}]}}}, "protocol.claims.c.points"),
        ({"controls": [{"name": "x", "claim": "q", "point": CHARS, "source": "s"}]}, r"protocol.controls\[0\].claim"),
        ({"rate_grid": {**BLOCK["rate_grid"], "length": 99}}, "protocol.rate_grid.length"),
        ({"rate_grid": {**BLOCK["rate_grid"], "regime": "claims_other"}}, "protocol.rate_grid.regime"),
    ]
    for change, key in bad:
        with pytest.raises(ConfigError, match=key):
            protocol.parse({**BLOCK, **change})


def test_tuning_writes_the_design_first_and_tunes_every_length(tmp_path):
    d = design()
    plain, dropping = (overrides(line) for line in protocol.tune(d, tmp_path))
    saved = json.loads((tmp_path / "plan" / "design.json").read_text())
    assert saved["hash"] == d.hash and saved["confirmation_seeds"] == list(d.confirmation_seeds)
    assert saved["design"] == BLOCK and saved["frozen"] == json.loads(json.dumps(d.doc))
    assert analysis_design.parse(saved).confirmation_seeds == d.confirmation_seeds  # the analysis reads it
    assert sorted(plain["design"].split(",")) == [
        "t_claims_adding_T30_lstm_none",
        "t_claims_chars_T25_lstm_none",
        "t_claims_chars_T50_lstm_none",
    ]
    assert sorted(dropping["design"].split(",")) == [
        "t_claims_chars_T25_lstm_dropout",
        "t_claims_chars_T50_lstm_dropout",
    ]
    assert dropping["reg.dropout.p"] == "0.1,0.5" and plain["seed"] == "100,101" and plain["train.lr"] == "0.01,0.03"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        c = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={plain['hydra.searchpath']}",
                "design=t_claims_chars_T25_lstm_none",
                "seed=100",
            ],
        )
    assert (c.task.name, c.task.seq_len, c.task.data_seed, c.train.early_stopping_patience) == ("chars", 25, 100, 4)
    with pytest.raises(ConfigError, match="SWEEP"):  # the folder holds this design: a changed one is refused
        protocol.tune(design({**BLOCK, "lr": [0.01, 0.1]}), tmp_path)


def test_one_dropout_p_is_set_in_the_designs_not_swept(tmp_path):
    """With a single p, an override `reg.dropout.p=0.5` would meet Hydra's first composition, where the arm is
    still `none` and has no dropout block; so the p goes into the dropping arms' designs, in one multirun."""
    (line,) = protocol.tune(design({**BLOCK, "dropout_p": [0.5]}), tmp_path)
    o = overrides(line)
    assert "reg.dropout.p" not in o and "t_claims_chars_T25_lstm_dropout" in o["design"].split(",")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        c = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={o['hydra.searchpath']}",
                *(f"{k}={v.split(',')[0]}" for k, v in o.items() if k in ("train.lr", "seed")),
                "design=t_claims_chars_T25_lstm_dropout",
            ],
        )
    assert (c.reg.name, c.reg.dropout.p) == ("dropout", 0.5)


def tuning_runs(sweep: Path, proto: protocol.Protocol) -> None:
    """Every tuning run: at chars T=25 dropout p=0.1 at lr 0.03 validates best, at T=50 p=0.5 at lr 0.01;
    `none` best at 0.01 everywhere."""
    for rg in proto.regimes:
        task = "chars" if "chars" in rg.name else "adding"
        for T in rg.lengths:
            best_drop = (0.1, 0.03) if T == 25 else (0.5, 0.01)
            for reg in rg.regs:
                for p in proto.dropout_p if reg == "dropout" else (None,):
                    for lr in proto.lr:
                        good = (reg == "dropout" and (p, lr) == best_drop) or (reg == "none" and lr == 0.01)
                        for s in proto.tuning_seeds:
                            kw = dict(cell="lstm", reg=reg, task=task, seq_len=T, seed=s, lr=lr, dropout_p=p)
                            make_run(sweep, **kw, val_score=0.8 if good else 0.5)


def test_confirmation_runs_the_chosen_settings_of_each_length_tested_points_on_every_seed(tmp_path):
    d, sweep = design(), tmp_path / "claims"
    partial = tmp_path / "partial"
    make_run(partial, cell="lstm", reg="none", task="chars", seq_len=25, seed=100, lr=0.01)
    with pytest.raises(ConfigError, match="tuning runs"):
        protocol.confirm(d, partial)  # tuning unfinished: refused
    tuning_runs(sweep, d.protocol)
    tested, explored = (overrides(line) for line in protocol.confirm(d, sweep))
    seeds = [str(s) for s in d.confirmation_seeds]
    assert tested["seed"].split(",") == seeds and explored["seed"].split(",") == seeds[:2]
    assert sorted(tested["design"].split(",")) == [
        "c_claims_adding_T30_lstm_none",  # the rate grid's point: tested
        "c_claims_adding_T30_lstm_none_lr0.003",
        "c_claims_adding_T30_lstm_none_lr0.03",
        "c_claims_chars_T50_lstm_dropout",  # claim (c)'s point
        "c_claims_chars_T50_lstm_none",
    ]
    assert sorted(explored["design"].split(",")) == ["c_claims_chars_T25_lstm_dropout", "c_claims_chars_T25_lstm_none"]
    chosen = pd.read_csv(sweep / "plan" / "chosen.csv")
    drop = chosen[(chosen["task"] == "chars") & (chosen["reg"] == "dropout")].set_index("seq_len")
    assert (drop.loc[25, "lr"], drop.loc[25, "dropout_p"]) == (0.03, 0.1)  # each length its own setting
    assert (drop.loc[50, "lr"], drop.loc[50, "dropout_p"]) == (0.01, 0.5)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        c = compose(
            config_name="config",
            overrides=[
                "+experiment=claims",
                f"hydra.searchpath={tested['hydra.searchpath']}",
                "design=c_claims_chars_T50_lstm_dropout",
                f"seed={seeds[3]}",
            ],
        )
    assert (c.task.seq_len, c.train.lr, c.reg.dropout.p, c.task.data_seed) == (50, 0.01, 0.5, int(seeds[3]))
    assert protocol.confirm(d, sweep) == protocol.confirm(d, sweep)  # deterministic: a rerun resumes


def test_the_rate_grid_runs_never_enter_selection_or_the_verdicts_runs(tmp_path):
    d, sweep = design(), tmp_path / "claims"
    tuning_runs(sweep, d.protocol)
    protocol.confirm(d, sweep)
    for lr in d.protocol.rate_grid.lr:
        for s in d.confirmation_seeds:
            make_run(sweep, cell="lstm", reg="none", task="adding", seq_len=30, seed=s, lr=lr)
    done = comparisons.add_variants(aggregate.aggregate(sweep, warn=lambda m: None).summary)
    used = comparisons.select(done, d.protocol.tuning_seeds)
    at = used[(used["task"] == "adding")]
    assert set(at["lr"]) == {0.01} and set(at["seed"]) == set(d.confirmation_seeds)


def test_the_dearest_designs_launch_first(tmp_path):
    """Two workers that took adding's cheap jobs first would leave a chars job (hidden 128) running alone at
    the end of the stage: the designs are listed by hidden² x T x budget, dearest first."""
    (line,) = protocol.tune(design({**BLOCK, "dropout_p": [0.5]}), tmp_path)
    names = overrides(line)["design"].split(",")
    assert names.index("t_claims_chars_T50_lstm_none") < names.index("t_claims_chars_T25_lstm_none")
    assert names.index("t_claims_chars_T25_lstm_none") < names.index("t_claims_adding_T30_lstm_none")
    rg = protocol.Regime("claims_chars", (25,))
    assert protocol.design_cost(rg, 50, "lstm", 32) == 2 * protocol.design_cost(rg, 25, "lstm", 32)


def test_a_users_experiment_and_regime_are_frozen_from_the_folder_they_were_found_in(tmp_path):
    """my_claims and its regime live only in the user's folder: the design holds those files (and the user's
    task), a changed regime there changes the hash, the same files in another folder do not."""
    study = tmp_path / "study" / "conf"
    shutil.copytree(PLUGIN / "conf", study)
    search = confpath.from_overrides([f"hydra.searchpath=[file://{study}]"])
    d = protocol.freeze("my_claims", search)
    assert d.doc["regimes"] == {"my_sign": yaml.safe_load((study / "regime" / "my_sign.yaml").read_text())}
    assert d.doc["tasks"] == {"sign": yaml.safe_load((study / "task" / "sign.yaml").read_text())}
    assert protocol.freeze("my_claims", confpath.from_overrides([PLUGIN_SEARCHPATH])).hash == d.hash
    regime = study / "regime" / "my_sign.yaml"
    regime.write_text(regime.read_text().replace("steps: 6", "steps: 7"))
    assert protocol.freeze("my_claims", search).hash != d.hash
    with pytest.raises(ConfigError, match=r"EXPERIMENT='my_claims'.*'claims_cpu'"):
        protocol.freeze("my_claims")  # not on the package's search path alone


def test_a_regime_that_no_folder_of_the_search_path_holds_is_named():
    with pytest.raises(ConfigError, match=r"protocol\.regimes='nope'.*'claims_adding'"):
        protocol.parse({**BLOCK, "regimes": {"nope": {"lengths": [5]}}, "rate_grid": None})
