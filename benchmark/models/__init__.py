"""Recurrent models as stacks of E >= 1 members: cells (gate math), the layer, the sequence model, stacking."""

from benchmark.models.cells import (
    CELLS,
    CellMath,
    GRUCell,
    Kernels,
    LSTMCell,
    RNNCell,
    Slots,
    check_cell_class,
    get_cell,
)
from benchmark.models.model import ModelSpec, SequenceModel, build_model, check_spec, needs_custom, resolve_impl
from benchmark.models.norm import bn_modules

__all__ = [
    "CELLS",
    "CellMath",
    "GRUCell",
    "Kernels",
    "LSTMCell",
    "RNNCell",
    "Slots",
    "check_cell_class",
    "get_cell",
    "ModelSpec",
    "SequenceModel",
    "build_model",
    "check_spec",
    "needs_custom",
    "resolve_impl",
    "bn_modules",
]
