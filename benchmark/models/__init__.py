"""Recurrent models: cells (gate math), layers (native and custom loops), the sequence model."""

from benchmark.models.cells import CELLS, CellMath, GRUCell, LSTMCell, RNNCell, Slots, check_cell_class, get_cell
from benchmark.models.model import ModelSpec, SequenceModel, build_model, check_spec, needs_custom, resolve_impl
from benchmark.models.norm import bn_modules, estimate_population

__all__ = [
    "CELLS",
    "CellMath",
    "GRUCell",
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
    "estimate_population",
]
