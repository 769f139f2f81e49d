"""Reference-propagation cells of the spatio-temporal baselines (CVPR 2019 paper, Sec. 3).

Every recurrent cell is one :class:`ConvLSTM` with one injected part, the *state aligner*,
which prepares ``h_{t-1}`` and ``c_{t-1}`` before the gates:

=========  ===============  ================================================================
name       class            aligner
=========  ===============  ================================================================
none       ClipCell         (no recurrence: each clip alone, the feature passes unchanged)
convlstm   ConvLSTM         identity
flow       FlowLSTM         ``h_{t-1}`` warped by a given dense optical flow
traj       TrajLSTM         L learned flow fields (TrajGRU links); 1x1 state convolution
warp       WarpLSTM         polyharmonic warp of ``h`` and ``c`` from control-point offsets
=========  ===============  ================================================================

All recurrent cells follow the paper's bottleneck design: the ``in_channels`` input is
projected to ``hidden_channels`` by a 1x1 convolution (+ReLU), the LSTM runs at that width
(Eq. 1 / Eq. 4; the candidate ``g`` uses tanh as in Shi et al.'s ConvLSTM), and the output is
``x + W_up * h_t`` (1x1 convolution back to ``in_channels`` plus the skip connection).

Tensors are channels-first ``(B, C, H, W)``; flows are ``(B, 2, H, W)`` in feature-map
pixels with ``(dy, dx)`` channels and the :func:`relocbench.ops.dense_image_warp`
convention ``warped(p) = state(p - flow(p))``.

These are the ``compact`` recipe (the default). ``create_cell(name, recipe="original",
in_channels=C)`` builds the authors' cells instead (:class:`OriginalConvLSTM`,
:class:`OriginalWarpLSTM`: full-width ``C``-channel state, separable gate convolutions,
layer norm, the skip connection inside ``h``). ``flow`` and ``traj`` have no counterpart in
the authors' code; in the original recipe they are the authors' cell with this project's
flow / trajectory alignment of both ``h`` and ``c`` (:class:`OriginalFlowLSTM`,
:class:`OriginalTrajLSTM`), a documented extension.
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from relocbench.errors import ConfigError
from relocbench.ops import bilinear_sample, dense_image_warp, sparse_image_warp

__all__ = [
    "LSTMState",
    "Alignment",
    "StateAligner",
    "IdentityAligner",
    "FlowAligner",
    "TrajAligner",
    "ControlPointAligner",
    "ClipCell",
    "ConvLSTM",
    "FlowLSTM",
    "TrajLSTM",
    "WarpLSTM",
    "control_points",
    "OriginalLSTMState",
    "OriginalConvLSTM",
    "OriginalWarpLSTM",
    "OriginalFlowLSTM",
    "OriginalTrajLSTM",
    "sample_links",
    "TFLayerNorm",
    "tf_layer_norm",
    "warp_control_points",
    "RECIPES",
    "register_cell",
    "list_cells",
    "create_cell",
    "run_sequence",
    "feature_flow",
    "sequence_flows",
]


class LSTMState(NamedTuple):
    """Hidden state ``h`` and memory cell ``c``, both ``(B, hidden_channels, H, W)``."""

    h: torch.Tensor
    c: torch.Tensor


class Alignment(NamedTuple):
    """What an aligner hands to the gates.

    ``hidden``: the aligned ``h_{t-1}`` (``state_copies * hidden`` channels);
    ``cell``: the aligned ``c_{t-1}``; ``flow``: the dense flow that was applied (``None`` for
    the identity; ``(B, L, 2, H, W)`` for the L TrajLSTM links), e.g. for Fig. 7-style plots.
    """

    hidden: torch.Tensor
    cell: torch.Tensor
    flow: Optional[torch.Tensor]


def _positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be an int >= 1. Got {value!r} instead."
        )
    return value


def _odd_kernel(value, name: str, owner: str) -> int:
    _positive_int(value, name, owner)
    if value % 2 == 0:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be an odd int (same-size padding). "
            f"Got {value!r} instead."
        )
    return value


# --------------------------------------------------------------------------- aligners
def _check_cell_input(owner: str, x: torch.Tensor, in_channels: int, state, state_channels: int,
                      names: Sequence[str] = ("h", "c")) -> None:
    """One check of a recurrent cell's input ``(batch, in_channels, height, width)`` and of its
    state's two tensors (``state_channels`` channels on the input's grid), named ``names``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ConfigError(
            f"The input of {owner} must be a (batch, {in_channels}, height, width) "
            f"tensor. Got {tuple(x.shape)} instead."
        )
    if state is not None:
        want = (x.shape[0], state_channels, *x.shape[2:])
        first, second = (getattr(state, n) for n in names)
        if tuple(first.shape) != want or tuple(second.shape) != want:
            raise ConfigError(
                f"The state of {owner} must hold {names[0]} and {names[1]} of shape {want}. Got "
                f"{tuple(first.shape)} and {tuple(second.shape)} instead."
            )


class StateAligner(nn.Module):
    """Injected part of :class:`ConvLSTM`: maps ``(x_t, h_{t-1}, c_{t-1})`` to an Alignment.

    ``x`` is the bottlenecked input (``hidden_channels`` wide). Subclasses may set
    ``state_copies`` (channel multiplier of the aligned hidden state) and
    ``state_kernel_size`` (forces the state-to-state convolution's kernel) and ``needs_flow``
    (the cell must be given an external dense flow at every step after the first).
    """

    state_copies: int = 1
    state_kernel_size: Optional[int] = None
    needs_flow: bool = False

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, *,
                flow: Optional[torch.Tensor] = None) -> Alignment:  # pragma: no cover
        raise NotImplementedError


class IdentityAligner(StateAligner):
    """Plain ConvLSTM: the state is used where it is."""

    def forward(self, x, h, c, *, flow=None):
        return Alignment(h, c, None)


class FlowAligner(StateAligner):
    """Optical-flow baseline: ``h_{t-1}`` (and ``c_{t-1}`` if ``warp_cell``) warped by a
    dense flow given at every step (see :func:`feature_flow`), border replicated. ``owner``
    names the cell in the error raised when the flow is missing."""

    needs_flow = True

    def __init__(self, *, warp_cell: bool = False, owner: str = "FlowLSTM") -> None:
        super().__init__()
        self.warp_cell = bool(warp_cell)
        self.owner = str(owner)

    def forward(self, x, h, c, *, flow=None):
        if flow is None:
            raise ConfigError(
                f"The 'flow' argument of {self.owner}.forward must be a (batch, 2, height, width) "
                "dense flow for every step after the first. Got None instead."
            )
        flow = flow.to(h.dtype)
        if self.warp_cell:
            both = dense_image_warp(torch.cat((h, c), 1), flow)
            h_w, c_w = both.split(h.shape[1], 1)
            return Alignment(h_w, c_w, flow)
        return Alignment(dense_image_warp(h, flow), c, flow)


def sample_links(state: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """``state`` ``(B, C, H, W)`` sampled along each of ``L`` link flows ``(B, L, 2, H, W)``
    with zero padding (TrajGRU's warp): ``(B, L, C, H, W)``, link ``l`` being
    ``dense_image_warp(state, flows[:, l], padding_mode="zeros")``."""
    b, ch, height, width = state.shape
    links = flows.shape[1]
    copies = state.unsqueeze(1).expand(b, links, ch, height, width)
    warped = dense_image_warp(copies.reshape(b * links, ch, height, width),
                              flows.reshape(b * links, 2, height, width), padding_mode="zeros")
    return warped.reshape(b, links, ch, height, width)


class TrajAligner(StateAligner):
    """TrajGRU's structure-generating network with ``links`` learned flows (Shi et al. 2017).

    A 5x5 convolution of ``x`` and one of ``h`` (``trajectory_channels`` each) are summed,
    passed through LeakyReLU(0.2) and a zero-initialised 5x5 convolution to ``2 * links``
    channels (so every link starts as the identity); ``h_{t-1}`` is sampled along each flow
    with zero padding and the ``links`` copies are concatenated (link-major) for a 1x1
    state-to-state convolution. ``c_{t-1}`` is not warped.
    """

    state_kernel_size = 1

    def __init__(self, *, hidden_channels: int, links: int = 5,
                 trajectory_channels: int = 32, kernel_size: int = 5) -> None:
        super().__init__()
        owner = "TrajLSTM"
        _positive_int(hidden_channels, "hidden_channels", owner)
        self.links = _positive_int(links, "links", owner)
        _positive_int(trajectory_channels, "trajectory_channels", owner)
        _odd_kernel(kernel_size, "trajectory_kernel_size", owner)
        self.state_copies = self.links
        pad = kernel_size // 2
        self.input_to_traj = nn.Conv2d(hidden_channels, trajectory_channels, kernel_size,
                                       padding=pad)
        self.state_to_traj = nn.Conv2d(hidden_channels, trajectory_channels, kernel_size,
                                       padding=pad)
        self.traj_to_flow = nn.Conv2d(trajectory_channels, 2 * self.links, kernel_size,
                                      padding=pad)
        nn.init.zeros_(self.traj_to_flow.weight)
        nn.init.zeros_(self.traj_to_flow.bias)

    def forward(self, x, h, c, *, flow=None):
        b, ch, height, width = h.shape
        hidden = F.leaky_relu(self.input_to_traj(x) + self.state_to_traj(h), 0.2)
        flows = self.traj_to_flow(hidden).reshape(b, self.links, 2, height, width)
        warped = sample_links(h, flows)
        return Alignment(warped.reshape(b, self.links * ch, height, width), c, flows)


def control_points(height: int, width: int, grid_size: int = 3, *,
                   dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """``grid_size x grid_size`` control points ``(N, 2)`` in (row, col), row-major.

    Horizontal and vertical lines evenly placed at ``size * k / (grid_size + 1)``,
    ``k = 1 .. grid_size``: on the paper's 20x20 map with 3x3 points this is
    ``{(5, 5), (5, 10), ..., (15, 15)}``; on other maps the layout is scaled.
    """
    _positive_int(grid_size, "grid_size", "control_points")
    frac = torch.arange(1, grid_size + 1, dtype=torch.float64) / (grid_size + 1)
    rows, cols = torch.meshgrid(frac * height, frac * width, indexing="ij")
    return torch.stack((rows.reshape(-1), cols.reshape(-1)), -1).to(dtype=dtype, device=device)


class ControlPointAligner(StateAligner):
    """Warp LSTM (paper Eq. 4): ``d = W_xd * x_t + W_hd * h_{t-1} + b_d`` (one 1x1
    convolution of ``[x_t; h_{t-1}]`` to ``(dy, dx)``), read at the control points; ``h`` and
    ``c`` are warped together by :func:`relocbench.ops.sparse_image_warp` moving each control
    point ``p_i`` to ``p_i + d(p_i)``, plus ``4 * num_boundary_points`` zero-displacement
    points on the border (TFA's ``num_boundary_points``). ``x_t`` is the bottlenecked input.
    The displacement convolution is zero-initialised, so training starts from the plain
    ConvLSTM. Maps must be larger than ``grid_size + 1`` on each side so that control points
    stay inside the border.
    """

    def __init__(self, *, hidden_channels: int, grid_size: int = 3,
                 num_boundary_points: int = 2, interpolation_order: int = 2,
                 regularization_weight: float = 0.0) -> None:
        super().__init__()
        owner = "WarpLSTM"
        _positive_int(hidden_channels, "hidden_channels", owner)
        self.grid_size = _positive_int(grid_size, "grid_size", owner)
        if isinstance(num_boundary_points, bool) or not isinstance(num_boundary_points, int) \
                or num_boundary_points < 0:
            raise ConfigError(
                f"The 'num_boundary_points' parameter of {owner} must be an int >= 0. "
                f"Got {num_boundary_points!r} instead."
            )
        if isinstance(interpolation_order, bool) or not isinstance(interpolation_order, int) \
                or interpolation_order < 1:
            raise ConfigError(
                f"The 'interpolation_order' parameter of {owner} must be an int >= 1 "
                f"(TensorFlow Addons' polyharmonic orders). Got {interpolation_order!r} instead."
            )
        if not regularization_weight >= 0:
            raise ConfigError(
                f"The 'regularization_weight' parameter of {owner} must be >= 0. "
                f"Got {regularization_weight!r} instead."
            )
        self.num_boundary_points = num_boundary_points
        self.interpolation_order = interpolation_order
        self.regularization_weight = float(regularization_weight)
        self.displacement = nn.Conv2d(2 * hidden_channels, 2, 1)
        nn.init.zeros_(self.displacement.weight)
        nn.init.zeros_(self.displacement.bias)

    def displacements(self, x: torch.Tensor, h: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Control points ``(B, N, 2)`` and their ``(dy, dx)`` displacements ``(B, N, 2)``."""
        b, _, height, width = h.shape
        if min(height, width) <= self.grid_size + 1:
            raise ConfigError(
                f"WarpLSTM with grid_size={self.grid_size} needs feature maps larger than "
                f"{self.grid_size + 1}x{self.grid_size + 1} (control points inside the border). "
                f"Got {height}x{width} instead."
            )
        src = control_points(height, width, self.grid_size, dtype=h.dtype, device=h.device)
        src = src.unsqueeze(0).expand(b, -1, -1)
        field = self.displacement(torch.cat((x, h), 1))
        return src, bilinear_sample(field, src)

    def forward(self, x, h, c, *, flow=None):
        src, disp = self.displacements(x, h)
        both, dense = sparse_image_warp(
            torch.cat((h, c), 1), src, src + disp,
            interpolation_order=self.interpolation_order,
            regularization_weight=self.regularization_weight,
            num_boundary_points=self.num_boundary_points)
        h_w, c_w = both.split(h.shape[1], 1)
        return Alignment(h_w, c_w, dense)


# --------------------------------------------------------------------------- registry
_CELLS: Dict[str, Type[nn.Module]] = {}


def register_cell(name: str) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    """Class decorator adding a propagation cell to the registry under ``name``."""

    def decorator(cls: Type[nn.Module]) -> Type[nn.Module]:
        if name in _CELLS and _CELLS[name] is not cls:
            raise ConfigError(f"A propagation cell named {name!r} is registered already "
                              f"({_CELLS[name].__name__}); pick another name.")
        _CELLS[name] = cls
        cls.cell_name = name
        return cls

    return decorator


def list_cells() -> List[str]:
    """Registered cell names, sorted."""
    return sorted(_CELLS)


#: Cell recipes: ``compact`` (relocbench's bottlenecked cells, the default) and ``original``
#: (the authors' cells, see :class:`OriginalConvLSTM`).
RECIPES = ("compact", "original")


def create_cell(name: str, *, recipe: str = "compact", **kwargs) -> nn.Module:
    """Build the cell registered as ``name`` with keyword hyperparameters.

    ``recipe="original"`` builds the original recipe's counterpart instead: ``none`` ->
    :class:`ClipCell` (their model before a cell was added), ``convlstm`` ->
    :class:`OriginalConvLSTM`, ``warp`` -> :class:`OriginalWarpLSTM` (the authors' cells);
    ``flow`` -> :class:`OriginalFlowLSTM` and ``traj`` -> :class:`OriginalTrajLSTM`, the
    authors' cell with this project's flow / trajectory alignment (no counterpart in the
    authors' code). A cell registered later without an original counterpart is refused.
    """
    if recipe not in RECIPES:
        raise ConfigError(
            f"The 'recipe' parameter must be one of {list(RECIPES)}. Got {recipe!r} instead."
        )
    if name not in _CELLS:
        raise ConfigError(
            f"The 'cell' parameter must be one of {list_cells()}. Got {name!r} instead."
        )
    if recipe == "original":
        if name not in _ORIGINAL_CELLS:
            raise ConfigError(
                f"The 'original' recipe has no {name!r} cell (it has "
                f"{sorted(_ORIGINAL_CELLS)}); use recipe='compact' for {name!r}."
            )
        return _ORIGINAL_CELLS[name](**kwargs)
    return _CELLS[name](**kwargs)


# --------------------------------------------------------------------------- cells
@register_cell("none")
class ClipCell(nn.Module):
    """Clip-independent baseline: no recurrence; the clip feature passes unchanged."""

    needs_flow = False

    def __init__(self, *, in_channels: int, hidden_channels: Optional[int] = None) -> None:
        # hidden_channels is accepted (and unused) so that a model can build every cell
        # with the same keywords.
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels", "ClipCell")

    def forward(self, x: torch.Tensor, state: None = None, *,
                flow: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, None]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"The input of ClipCell must be a (batch, {self.in_channels}, height, width) "
                f"tensor. Got {tuple(x.shape)} instead."
            )
        return x, None


@register_cell("convlstm")
class ConvLSTM(nn.Module):
    """Bottlenecked ConvLSTM with an injected state aligner (identity by default).

    Args (keyword-only):
        in_channels: channels of the clip feature ``x_t`` (1024 in the paper).
        hidden_channels: bottleneck width of the LSTM (128 in the paper).
        kernel_size: input-to-state convolution kernel (odd).
        state_kernel_size: state-to-state kernel (odd; defaults to ``kernel_size``; an
            aligner may force it, as TrajLSTM forces 1).
        aligner: the injected :class:`StateAligner`.

    ``forward(x, state=None, *, flow=None)`` returns ``(x + W_up * h_t, LSTMState(h_t, c_t))``;
    ``state=None`` starts from zeros (the aligner is not called on the first step).
    """

    def __init__(self, *, in_channels: int, hidden_channels: int = 128, kernel_size: int = 3,
                 state_kernel_size: Optional[int] = None,
                 aligner: Optional[StateAligner] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _positive_int(in_channels, "in_channels", owner)
        self.hidden_channels = _positive_int(hidden_channels, "hidden_channels", owner)
        _odd_kernel(kernel_size, "kernel_size", owner)
        aligner = IdentityAligner() if aligner is None else aligner
        if not isinstance(aligner, StateAligner):
            raise ConfigError(f"The 'aligner' parameter of {owner} must be a StateAligner. "
                              f"Got {type(aligner).__name__} instead.")
        if aligner.state_kernel_size is not None:
            state_kernel_size = aligner.state_kernel_size
        elif state_kernel_size is None:
            state_kernel_size = kernel_size
        _odd_kernel(state_kernel_size, "state_kernel_size", owner)
        self.aligner = aligner
        self.needs_flow = aligner.needs_flow
        hid = hidden_channels
        self.reduce = nn.Conv2d(in_channels, hid, 1)
        self.input_to_state = nn.Conv2d(hid, 4 * hid, kernel_size, padding=kernel_size // 2)
        self.state_to_state = nn.Conv2d(aligner.state_copies * hid, 4 * hid, state_kernel_size,
                                        padding=state_kernel_size // 2, bias=False)
        self.expand = nn.Conv2d(hid, in_channels, 1)
        with torch.no_grad():  # forget-gate bias 1 (gate order: i, f, o, g)
            self.input_to_state.bias[hid:2 * hid].fill_(1.0)

    def init_state(self, x: torch.Tensor) -> LSTMState:
        b, _, height, width = x.shape
        zeros = x.new_zeros(b, self.hidden_channels, height, width)
        return LSTMState(zeros, zeros)

    def _check(self, x: torch.Tensor, state: Optional[LSTMState]) -> None:
        _check_cell_input(type(self).__name__, x, self.in_channels, state, self.hidden_channels)

    def align(self, x: torch.Tensor, state: LSTMState, *,
              flow: Optional[torch.Tensor] = None) -> Alignment:
        """The aligned previous state for input ``x`` (runs the input bottleneck)."""
        self._check(x, state)
        return self.aligner(F.relu(self.reduce(x)), state.h, state.c, flow=flow)

    def forward(self, x: torch.Tensor, state: Optional[LSTMState] = None, *,
                flow: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, LSTMState]:
        self._check(x, state)
        xb = F.relu(self.reduce(x))
        gates = self.input_to_state(xb)
        if state is None:
            c_prev = xb.new_zeros(xb.shape[0], self.hidden_channels, *xb.shape[2:])
        else:
            aligned = self.aligner(xb, state.h, state.c, flow=flow)
            gates = gates + self.state_to_state(aligned.hidden)
            c_prev = aligned.cell
        i, f, o, g = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return x + self.expand(h), LSTMState(h, c)


@register_cell("flow")
class FlowLSTM(ConvLSTM):
    """ConvLSTM whose ``h_{t-1}`` is warped by dense optical flow (give ``flow=`` per step)."""

    def __init__(self, *, in_channels: int, hidden_channels: int = 128, kernel_size: int = 3,
                 warp_cell: bool = False) -> None:
        super().__init__(in_channels=in_channels, hidden_channels=hidden_channels,
                         kernel_size=kernel_size, aligner=FlowAligner(warp_cell=warp_cell))


@register_cell("traj")
class TrajLSTM(ConvLSTM):
    """TrajGRU's learned links in a ConvLSTM (the paper's "TrajLSTM", L = 5 links)."""

    def __init__(self, *, in_channels: int, hidden_channels: int = 128, kernel_size: int = 3,
                 links: int = 5, trajectory_channels: int = 32,
                 trajectory_kernel_size: int = 5) -> None:
        super().__init__(
            in_channels=in_channels, hidden_channels=hidden_channels, kernel_size=kernel_size,
            aligner=TrajAligner(hidden_channels=hidden_channels, links=links,
                                trajectory_channels=trajectory_channels,
                                kernel_size=trajectory_kernel_size))


@register_cell("warp")
class WarpLSTM(ConvLSTM):
    """Warp LSTM (paper Eq. 4): 3x3 control points, zero-displacement border points.

    The paper adds "extra control points with zero displacements at the boundary" without
    saying how many; the default ``num_boundary_points=2`` pins the four corners and the
    middle of each edge (8 points; ``1`` would pin the corners only).
    """

    def __init__(self, *, in_channels: int, hidden_channels: int = 128, kernel_size: int = 3,
                 grid_size: int = 3, num_boundary_points: int = 2,
                 interpolation_order: int = 2, regularization_weight: float = 0.0) -> None:
        super().__init__(
            in_channels=in_channels, hidden_channels=hidden_channels, kernel_size=kernel_size,
            aligner=ControlPointAligner(hidden_channels=hidden_channels, grid_size=grid_size,
                                        num_boundary_points=num_boundary_points,
                                        interpolation_order=interpolation_order,
                                        regularization_weight=regularization_weight))


# --------------------------------------------------------------------------- original recipe
# The authors' cells, read from github.com/fengyang0317/tf_models, branch warp_c (head ee24960d),
# research/object_detection/meta_architectures/conv_lstm_cell.py (cited below as
# "conv_lstm_cell.py:LINE"; the ConvLSTM is the same file at commit 04780188, lines 77-101,
# before the warp was added) and ava_meta_arch.py:943 (``ConvLSTMCell(2, [20, 20, 1024],
# 1024, [3, 3])``). TensorFlow's NHWC layout is channels-first here.
class OriginalLSTMState(NamedTuple):
    """State of the original cells, in TensorFlow's ``LSTMStateTuple`` order: ``(c, h)``, both
    ``(B, in_channels, H, W)``. ``h`` is the cell's output, skip connection included."""

    c: torch.Tensor
    h: torch.Tensor


def tf_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                  eps: float = 1e-12) -> torch.Tensor:
    """``tf.contrib.layers.layer_norm`` (TF 1.x defaults) of a channels-first tensor.

    TensorFlow normalises over every axis but the batch (``begin_norm_axis=1``: here channels,
    height and width together; population variance, ``variance_epsilon=1e-12``) and applies a
    learned per-channel scale ``weight`` and offset ``bias`` (``begin_params_axis=-1``: the
    channel axis only, initialised to 1 and 0).
    """
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean) * torch.rsqrt(var + eps) * weight.view(shape) + bias.view(shape)


class TFLayerNorm(nn.Module):
    """:func:`tf_layer_norm` with its per-channel ``weight`` (gamma) and ``bias`` (beta)."""

    def __init__(self, channels: int, *, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tf_layer_norm(x, self.weight, self.bias, eps=self.eps)


def warp_control_points(height: int, width: int, stride: int = 5, *,
                        dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Control points ``(N, 2)`` (row, col), row-major, of the original warp cell.

    The original reads its displacement map with a stride-5 1x1 convolution ('SAME': rows and
    columns 0, 5, 10, ...) and drops the first row and column (conv_lstm_cell.py:81-83), then
    pins the points to ``(5, 10, 15)^2`` of its 20x20 map (conv_lstm_cell.py:86-91). For an
    ``H x W`` map the same rule gives the multiples of ``stride`` strictly inside the border
    rows and columns, ``0 < 5k < H - 1`` (resp. ``W - 1``): on 20x20 the nine points
    ``(5, 5), (5, 10), ..., (15, 15)``.
    """
    _positive_int(stride, "control_stride", "warp_control_points")
    rows = torch.arange(stride, height - 1, stride, dtype=torch.float64)
    cols = torch.arange(stride, width - 1, stride, dtype=torch.float64)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack((grid_r.reshape(-1), grid_c.reshape(-1)), -1).to(dtype=dtype,
                                                                        device=device)


class OriginalConvLSTM(nn.Module):
    """The authors' ConvLSTM cell (conv_lstm_cell.py at commit 04780188, lines 77-101).

    ``h`` and ``c`` have ``in_channels`` channels (1024 in the paper). Gates:
    ``concat([x, h])`` -> depthwise 3x3 (depth multiplier 1, no bias) -> pointwise 1x1 to
    ``gate_channels`` (128) -> 1x1 convolution to ``4 * in_channels``, no nonlinearity between
    (slim ``separable_conv2d`` then ``conv2d``, lines 119-124 at the warp_c head); gate order
    i, j, f, o (line 128); :func:`tf_layer_norm` on each gate and on the new cell (scopes
    ``input``, ``transform``, ``forget``, ``output``, ``state``; lines 129-135); the forget
    bias ``forget_bias`` is a constant added before the sigmoid, not a parameter (line 133);
    ``output = tanh(c) * sigmoid(o) + x`` and the state's ``h`` is that output (lines
    136-140). Weights are Xavier-uniform and biases zero (slim's defaults; the cell is built
    outside any ``arg_scope``, ava_meta_arch.py:943).

    ``forward(x, state=None, *, flow=None)`` returns ``(output, OriginalLSTMState(c, output))``;
    ``state=None`` starts from zeros (TensorFlow's ``zero_state``).

    Subclasses change only :meth:`align`, the previous state as the gates see it (the warp,
    flow and trajectory cells); ``state_copies`` is the number of aligned copies of ``h`` the
    gates read (``concat([x, h_1, ..., h_L])``; 1 but for :class:`OriginalTrajLSTM`).
    """

    needs_flow = False
    recipe = "original"
    state_copies: int = 1

    def __init__(self, *, in_channels: int, gate_channels: int = 128, kernel_size: int = 3,
                 forget_bias: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _positive_int(in_channels, "in_channels", owner)
        self.gate_channels = _positive_int(gate_channels, "gate_channels", owner)
        _odd_kernel(kernel_size, "kernel_size", owner)
        self.forget_bias = float(forget_bias)
        both = (1 + self.state_copies) * in_channels
        self.gate_depthwise = nn.Conv2d(both, both, kernel_size, padding=kernel_size // 2,
                                        groups=both, bias=False)
        self.gate_pointwise = nn.Conv2d(both, gate_channels, 1)
        self.gates = nn.Conv2d(gate_channels, 4 * in_channels, 1)
        self.norms = nn.ModuleDict({name: TFLayerNorm(in_channels) for name in
                                    ("input", "transform", "forget", "output", "state")})
        for conv in (self.gate_depthwise, self.gate_pointwise, self.gates):
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def init_state(self, x: torch.Tensor) -> OriginalLSTMState:
        zeros = x.new_zeros(x.shape[0], self.in_channels, *x.shape[2:])
        return OriginalLSTMState(zeros, zeros)

    def _check(self, x: torch.Tensor, state: Optional[OriginalLSTMState],
               flow: Optional[torch.Tensor]) -> None:
        owner = type(self).__name__
        _check_cell_input(owner, x, self.in_channels, state, self.in_channels, names=("c", "h"))
        if flow is not None and not self.needs_flow:
            raise ConfigError(f"The 'flow' argument of {owner}.forward must be None (the cell "
                              f"takes no optical flow). Got a {type(flow).__name__} instead.")

    def align(self, x: torch.Tensor, state: OriginalLSTMState, *,
              flow: Optional[torch.Tensor] = None) -> OriginalLSTMState:
        """The previous state as the gates see it (the identity for the ConvLSTM): ``c``
        ``(B, C, H, W)`` and ``h`` ``(B, state_copies * C, H, W)``."""
        return state

    def forward(self, x: torch.Tensor, state: Optional[OriginalLSTMState] = None, *,
                flow: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, OriginalLSTMState]:
        self._check(x, state, flow)
        if state is None:
            # warping a zero state gives zeros: the first step needs no alignment
            c_prev, h_prev = self.init_state(x)
            if self.state_copies > 1:
                h_prev = h_prev.repeat(1, self.state_copies, 1, 1)
        else:
            c_prev, h_prev = self.align(x, state, flow=flow)
        z = self.gates(self.gate_pointwise(self.gate_depthwise(torch.cat((x, h_prev), 1))))
        i, j, f, o = z.chunk(4, 1)
        i = self.norms["input"](i)
        j = self.norms["transform"](j)
        f = self.norms["forget"](f)
        o = self.norms["output"](o)
        c = torch.sigmoid(f + self.forget_bias) * c_prev + torch.sigmoid(i) * torch.tanh(j)
        c = self.norms["state"](c)
        out = torch.tanh(c) * torch.sigmoid(o) + x
        return out, OriginalLSTMState(c, out)


class OriginalWarpLSTM(OriginalConvLSTM):
    """The authors' warp LSTM (conv_lstm_cell.py:78-140 at the warp_c head).

    Before the gates, the displacements are a separable 1x1 convolution (depthwise, no bias;
    pointwise to 2 channels with bias; Xavier-uniform, no activation) of the raw
    ``concat([x, h])`` at stride ``control_stride`` (lines 80-83), read at
    :func:`warp_control_points` (channel 0 the row, channel 1 the column displacement; lines
    85-93); ``h`` and ``c`` are both warped by :func:`relocbench.ops.sparse_image_warp`
    moving each control point ``p`` to ``p + d(p)``, polyharmonic order
    ``interpolation_order`` (2), no regularisation, ``num_boundary_points=4`` (16 zero-flow
    border points; lines 94-103). The rest is :class:`OriginalConvLSTM`.
    """

    def __init__(self, *, in_channels: int, gate_channels: int = 128, kernel_size: int = 3,
                 forget_bias: float = 1.0, control_stride: int = 5, num_boundary_points: int = 4,
                 interpolation_order: int = 2) -> None:
        super().__init__(in_channels=in_channels, gate_channels=gate_channels,
                         kernel_size=kernel_size, forget_bias=forget_bias)
        owner = type(self).__name__
        self.control_stride = _positive_int(control_stride, "control_stride", owner)
        if isinstance(num_boundary_points, bool) or not isinstance(num_boundary_points, int) \
                or num_boundary_points < 0:
            raise ConfigError(
                f"The 'num_boundary_points' parameter of {owner} must be an int >= 0. "
                f"Got {num_boundary_points!r} instead."
            )
        self.num_boundary_points = num_boundary_points
        self.interpolation_order = _positive_int(interpolation_order, "interpolation_order",
                                                 owner)
        both = 2 * in_channels
        self.displacement_depthwise = nn.Conv2d(both, both, 1, groups=both, bias=False)
        self.displacement_pointwise = nn.Conv2d(both, 2, 1)
        nn.init.xavier_uniform_(self.displacement_depthwise.weight)
        nn.init.xavier_uniform_(self.displacement_pointwise.weight)
        nn.init.zeros_(self.displacement_pointwise.bias)

    def displacements(self, x: torch.Tensor, h: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Control points ``(B, N, 2)`` and their ``(dy, dx)`` displacements ``(B, N, 2)``."""
        b, _, height, width = h.shape
        s = self.control_stride
        src = warp_control_points(height, width, s, dtype=h.dtype, device=h.device)
        rows = len(range(s, height - 1, s))
        cols = len(range(s, width - 1, s))
        if rows == 0 or cols == 0:
            raise ConfigError(
                f"{type(self).__name__} with control_stride={s} needs feature maps larger than "
                f"{s + 1}x{s + 1} (control points inside the border). Got {height}x{width} "
                "instead."
            )
        sampled = torch.cat((x, h), 1)[:, :, s::s, s::s][:, :, :rows, :cols]
        field = self.displacement_pointwise(self.displacement_depthwise(sampled))
        disp = field.reshape(b, 2, rows * cols).transpose(1, 2)
        return src.unsqueeze(0).expand(b, -1, -1), disp

    def align(self, x: torch.Tensor, state: OriginalLSTMState, *,
              flow: Optional[torch.Tensor] = None) -> OriginalLSTMState:
        src, disp = self.displacements(x, state.h)
        both, _ = sparse_image_warp(torch.cat((state.h, state.c), 1), src, src + disp,
                                    interpolation_order=self.interpolation_order,
                                    regularization_weight=0.0,
                                    num_boundary_points=self.num_boundary_points)
        h_w, c_w = both.split(self.in_channels, 1)
        return OriginalLSTMState(c_w, h_w)


class OriginalFlowLSTM(OriginalConvLSTM):
    """The authors' cell with this project's flow alignment: no counterpart in the authors' code.

    :class:`OriginalConvLSTM` whose previous ``h`` and ``c`` are both warped, before the gates,
    by the dense optical flow given at every step after the first (``forward(x, state,
    flow=...)``, ``(B, 2, H, W)`` ``(dy, dx)`` in feature-map pixels, as the compact
    :class:`FlowLSTM` takes it; see :func:`feature_flow`), with the border replicated
    (:class:`FlowAligner` with ``warp_cell=True``). This is the original warp cell's alignment
    of both states (conv_lstm_cell.py:94-103) with its sparse spline warp replaced by a dense
    warp along the given flow; it adds no parameter, so a zero flow gives the
    :class:`OriginalConvLSTM` with the same weights.
    """

    needs_flow = True

    def __init__(self, *, in_channels: int, gate_channels: int = 128, kernel_size: int = 3,
                 forget_bias: float = 1.0) -> None:
        super().__init__(in_channels=in_channels, gate_channels=gate_channels,
                         kernel_size=kernel_size, forget_bias=forget_bias)
        self.aligner = FlowAligner(warp_cell=True, owner=type(self).__name__)

    def align(self, x: torch.Tensor, state: OriginalLSTMState, *,
              flow: Optional[torch.Tensor] = None) -> OriginalLSTMState:
        aligned = self.aligner(x, state.h, state.c, flow=flow)
        return OriginalLSTMState(aligned.cell, aligned.hidden)


class OriginalTrajLSTM(OriginalConvLSTM):
    """The authors' cell with this project's trajectory alignment: no counterpart in the
    authors' code.

    :class:`OriginalConvLSTM` with TrajGRU's ``links`` learned flows (Shi et al. 2017), as the
    compact :class:`TrajLSTM` has them, computed like the original warp cell's displacements
    from the raw ``concat([x, h])`` (``2 C`` channels): a ``trajectory_kernel_size`` convolution
    to ``trajectory_channels``, LeakyReLU(0.2), and a zero-initialised convolution of the same
    kernel to ``2 * links`` channels ``(dy, dx)`` per link, so that every link starts as the
    identity (the first convolution is Xavier-uniform with a zero bias, slim's defaults as in
    the rest of the cell). Both ``h`` and ``c`` are sampled along each link with zero padding
    (:func:`sample_links`), as the original warp cell warps both. The links combine as in the
    compact cell: the ``L`` samples of ``h`` are concatenated link-major and the gates read
    ``concat([x, h_1, ..., h_L])`` (the separable gate convolution is ``(1 + L) C`` wide, its
    1x1 pointwise part being the learned per-link weighting of TrajGRU's 1x1 state
    convolution); the memory cell enters the gates only through ``f * c``, which takes one
    ``C``-channel tensor, so its ``L`` samples are averaged (this project's choice). At the
    zero initialisation it is therefore the :class:`OriginalConvLSTM` whose ``h`` weights are
    the sum over the links (with equal depthwise kernels for the links' copies).
    """

    def __init__(self, *, in_channels: int, gate_channels: int = 128, kernel_size: int = 3,
                 forget_bias: float = 1.0, links: int = 5, trajectory_channels: int = 32,
                 trajectory_kernel_size: int = 5) -> None:
        owner = type(self).__name__
        # read by OriginalConvLSTM.__init__ for the width of the gate convolution
        self.state_copies = _positive_int(links, "links", owner)
        super().__init__(in_channels=in_channels, gate_channels=gate_channels,
                         kernel_size=kernel_size, forget_bias=forget_bias)
        self.links = self.state_copies
        _positive_int(trajectory_channels, "trajectory_channels", owner)
        _odd_kernel(trajectory_kernel_size, "trajectory_kernel_size", owner)
        pad = trajectory_kernel_size // 2
        self.trajectory = nn.Conv2d(2 * in_channels, trajectory_channels, trajectory_kernel_size,
                                    padding=pad)
        self.traj_to_flow = nn.Conv2d(trajectory_channels, 2 * self.links, trajectory_kernel_size,
                                      padding=pad)
        nn.init.xavier_uniform_(self.trajectory.weight)
        nn.init.zeros_(self.trajectory.bias)
        nn.init.zeros_(self.traj_to_flow.weight)
        nn.init.zeros_(self.traj_to_flow.bias)

    def link_flows(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The ``(B, links, 2, H, W)`` ``(dy, dx)`` flows of the links from ``concat([x, h])``."""
        hidden = F.leaky_relu(self.trajectory(torch.cat((x, h), 1)), 0.2)
        return self.traj_to_flow(hidden).reshape(h.shape[0], self.links, 2, *h.shape[2:])

    def align(self, x: torch.Tensor, state: OriginalLSTMState, *,
              flow: Optional[torch.Tensor] = None) -> OriginalLSTMState:
        flows = self.link_flows(x, state.h)
        h_links = sample_links(state.h, flows)
        c_links = sample_links(state.c, flows)
        return OriginalLSTMState(c_links.mean(1), h_links.flatten(1, 2))


#: The counterpart of each registered cell name in the original recipe
#: (``create_cell(..., recipe="original")``): the authors' cells for ``none``, ``convlstm`` and
#: ``warp``; for ``flow`` and ``traj`` the authors' cell with this project's alignment.
_ORIGINAL_CELLS: Dict[str, Type[nn.Module]] = {
    "none": ClipCell,
    "convlstm": OriginalConvLSTM,
    "flow": OriginalFlowLSTM,
    "traj": OriginalTrajLSTM,
    "warp": OriginalWarpLSTM,
}


def run_sequence(cell: nn.Module, features: torch.Tensor,
                 flows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Propagate ``features`` ``(B, T, C, H, W)`` through ``cell`` from a zero state.

    ``flows`` ``(B, T, 2, H, W)``: ``flows[:, t]`` aligns step ``t - 1`` with step ``t``
    (``flows[:, 0]`` is unused); required by cells with ``needs_flow``.
    Returns the ``(B, T, C, H, W)`` propagated features.
    """
    if features.dim() != 5:
        raise ConfigError("The 'features' parameter of run_sequence must be a (batch, time, "
                          f"channels, height, width) tensor. Got {tuple(features.shape)} instead.")
    b, t, _, height, width = features.shape
    if getattr(cell, "needs_flow", False):
        if flows is None or tuple(flows.shape) != (b, t, 2, height, width):
            found = None if flows is None else tuple(flows.shape)
            raise ConfigError(
                f"The 'flows' parameter of run_sequence must be a {(b, t, 2, height, width)} "
                f"tensor for the {type(cell).__name__} cell. Got {found} instead."
            )
    state = None
    outputs = []
    for step in range(t):
        flow = None if flows is None else flows[:, step]
        out, state = cell(features[:, step], state, flow=flow)
        outputs.append(out)
    return torch.stack(outputs, 1)


# --------------------------------------------------------------------------- optical flow
_FLOW_METHODS = ("farneback", "dis")


def _gray(frame: np.ndarray, name: str) -> np.ndarray:
    import cv2

    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.dtype != np.uint8 or min(arr.shape) < 2:
        raise ConfigError(
            f"The '{name}' parameter of feature_flow must be a uint8 (height, width) or "
            f"(height, width, 3) RGB frame. Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return np.ascontiguousarray(arr)


def feature_flow(current: np.ndarray, previous: np.ndarray, *, size: Sequence[int],
                 method: str = "farneback") -> torch.Tensor:
    """Dense optical flow aligning the previous step's feature map with the current one.

    Computes the flow from ``current`` to ``previous`` (OpenCV Farneback or DIS, both
    deterministic), so that ``current(p) ~ previous(p + G(p))``, resizes it to the feature
    map ``size = (height, width)`` with area averaging and rescales it to feature pixels.
    Returns a float32 ``(2, height, width)`` ``(dy, dx)`` flow ``-G`` for
    :func:`relocbench.ops.dense_image_warp`: ``dense_image_warp(h_prev, flow)`` moves
    ``h_prev`` to where the content is in the current frame.
    """
    import cv2

    if method not in _FLOW_METHODS:
        raise ConfigError(f"The 'method' parameter of feature_flow must be one of "
                          f"{list(_FLOW_METHODS)}. Got {method!r} instead.")
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                             for s in size):
        raise ConfigError("The 'size' parameter of feature_flow must be (height, width) "
                          f"positive ints. Got {size!r} instead.")
    cur = _gray(current, "current")
    prev = _gray(previous, "previous")
    if cur.shape != prev.shape:
        raise ConfigError(f"The 'previous' frame of feature_flow must have the shape of "
                          f"'current' {cur.shape}. Got {prev.shape} instead.")
    if method == "farneback":
        g = cv2.calcOpticalFlowFarneback(cur, prev, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        g = dis.calc(cur, prev, None)
    height, width = size
    frame_h, frame_w = cur.shape
    interp = cv2.INTER_AREA if height <= frame_h and width <= frame_w else cv2.INTER_LINEAR
    small = cv2.resize(g, (width, height), interpolation=interp)
    dy = -small[..., 1] * (height / frame_h)
    dx = -small[..., 0] * (width / frame_w)
    return torch.from_numpy(np.stack((dy, dx)).astype(np.float32))


def sequence_flows(frames: Sequence[np.ndarray], *, size: Sequence[int],
                   method: str = "farneback") -> torch.Tensor:
    """``(T, 2, height, width)`` flows between consecutive frames (e.g. clip keyframes).

    ``flows[t]`` aligns step ``t - 1`` with step ``t``; ``flows[0]`` is zero.
    """
    if len(frames) == 0:
        raise ConfigError("The 'frames' parameter of sequence_flows must hold at least one "
                          "frame. Got 0 frames instead.")
    out = [torch.zeros(2, *size)]
    for t in range(1, len(frames)):
        out.append(feature_flow(frames[t], frames[t - 1], size=size, method=method))
    return torch.stack(out)
