"""The settings blocks of the built-in arms: `reg.bn`, `reg.dropout`, `reg.ln`, `reg.zoneout`.

What a user sets (conf/reg/<arm>.yaml, `reg.bn.placement=input`), typed. They live below the arms
(benchmark/arms/bn.py, dropout.py, ln.py, zoneout.py check and use them) so that the built-in arms'
run ids (benchmark/arms/legacy.py, every block at its defaults) read them without importing an arm.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class BNPlacement(str, enum.Enum):
    recurrent = "recurrent"  # Cooijmans et al. 2016
    input = "input"  # Laurent et al. 2016
    output = "output"  # BN over features of each layer's output sequence


class BNPopulation(str, enum.Enum):
    """How BN's population statistics (used at eval) are obtained."""

    precise = "precise"  # re-estimated over training batches, weights frozen, before every evaluation
    moving = "moving"  # torch's momentum average over the training steps' batches


@dataclass
class BNConfig:
    placement: BNPlacement = BNPlacement.recurrent
    momentum: float = 0.1
    eps: float = 1e-5
    # None = the placement's literature default: 0.1 for recurrent (Cooijmans), 1.0 otherwise.
    gain_init: Optional[float] = None
    # Per-step (recurrent) BN keeps population statistics for this many steps; later steps reuse the
    # last. null = the task's total_len (every step has its own); a value below total_len is refused.
    max_stats_steps: Optional[int] = None
    population: BNPopulation = BNPopulation.precise
    precise_batches: int = 20  # training batches (of train.batch_size) per precise estimate


class DropoutPlacement(str, enum.Enum):
    output = "output"  # Zaremba et al. 2014: non-recurrent connections, fresh mask per step
    variational = "variational"  # Gal & Ghahramani 2016: one mask per sequence, inputs + state
    recurrent = "recurrent"  # Semeniuta et al. 2016: candidate update only


@dataclass
class DropoutConfig:
    placement: DropoutPlacement = DropoutPlacement.output
    p: float = 0.25
    # Dropout of the raw task input (often 1-2 features): off unless asked. `p` acts on
    # hidden connections only (between layers, the head's input, the recurrent state).
    input_p: float = 0.0


@dataclass
class LNConfig:
    eps: float = 1e-5
    gain_init: float = 1.0  # Ba et al. 2016 initialise the gains to 1 and the biases to 0
    # Normalise W_ih·x too (Ba et al.'s LSTM). With one input feature LN(w·x) = sign(x)·LN(w): only the
    # sign of x reaches the cell, so tasks fed one value per step may want `false` (W_hh·h and c only).
    input: bool = True


@dataclass
class ZoneoutConfig:
    # Krueger et al. 2017 found z_c = 0.5 on LSTM cells and z_h = 0.05 on hidden states to work well
    # across their tasks; cells without a memory (rnn, gru) use p_h only.
    p_h: float = 0.05
    p_c: float = 0.5
