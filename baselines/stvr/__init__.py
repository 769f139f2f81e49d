"""Spatio-temporal video re-localization baselines (CVPR 2019 paper, Table 1).

One model with an injected reference-propagation cell; the cells live in
:mod:`relocbench_baselines.stvr.cells` and are found by name through its registry. The
``original`` recipe (the authors' model: their cells, Inception-I3D, their heads and
training) is :mod:`relocbench_baselines.stvr.original_model`, chosen by the ``recipe`` field
of the baselines' config (:data:`relocbench_baselines.stvr.zoo.STVR_RECIPES`).
"""
from .cells import (
    Alignment,
    ClipCell,
    ConvLSTM,
    FlowLSTM,
    LSTMState,
    TrajLSTM,
    WarpLSTM,
    control_points,
    create_cell,
    feature_flow,
    list_cells,
    register_cell,
    run_sequence,
    sequence_flows,
)

__all__ = [
    "Alignment",
    "ClipCell",
    "ConvLSTM",
    "FlowLSTM",
    "LSTMState",
    "TrajLSTM",
    "WarpLSTM",
    "control_points",
    "create_cell",
    "feature_flow",
    "list_cells",
    "register_cell",
    "run_sequence",
    "sequence_flows",
]
