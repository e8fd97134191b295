"""Recurrent models: cells (gate math), layers (native and custom loops), the sequence model."""
from benchmark.models.cells import CELLS, CellMath, GRUCell, LSTMCell, RNNCell, Slots, check_cell_class, get_cell
from benchmark.models.model import ModelSpec, SequenceModel, build_model, needs_custom, resolve_impl

__all__ = ["CELLS", "CellMath", "GRUCell", "LSTMCell", "RNNCell", "Slots", "check_cell_class", "get_cell",
           "ModelSpec", "SequenceModel", "build_model", "needs_custom", "resolve_impl"]
