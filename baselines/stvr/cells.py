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
    dense flow given at every step (see :func:`feature_flow`), border replicated."""

    needs_flow = True

    def __init__(self, *, warp_cell: bool = False) -> None:
        super().__init__()
        self.warp_cell = bool(warp_cell)

    def forward(self, x, h, c, *, flow=None):
        if flow is None:
            raise ConfigError(
                "The 'flow' argument of FlowLSTM.forward must be a (batch, 2, height, width) "
                "dense flow for every step after the first. Got None instead."
            )
        flow = flow.to(h.dtype)
        if self.warp_cell:
            both = dense_image_warp(torch.cat((h, c), 1), flow)
            h_w, c_w = both.split(h.shape[1], 1)
            return Alignment(h_w, c_w, flow)
        return Alignment(dense_image_warp(h, flow), c, flow)


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
        copies = h.unsqueeze(1).expand(b, self.links, ch, height, width)
        warped = dense_image_warp(copies.reshape(b * self.links, ch, height, width),
                                  flows.reshape(b * self.links, 2, height, width),
                                  padding_mode="zeros")
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


def create_cell(name: str, **kwargs) -> nn.Module:
    """Build the cell registered as ``name`` with keyword hyperparameters."""
    if name not in _CELLS:
        raise ConfigError(
            f"The 'cell' parameter must be one of {list_cells()}. Got {name!r} instead."
        )
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
        owner = type(self).__name__
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"The input of {owner} must be a (batch, {self.in_channels}, height, width) "
                f"tensor. Got {tuple(x.shape)} instead."
            )
        if state is not None:
            want = (x.shape[0], self.hidden_channels, *x.shape[2:])
            if tuple(state.h.shape) != want or tuple(state.c.shape) != want:
                raise ConfigError(
                    f"The state of {owner} must hold h and c of shape {want}. Got "
                    f"{tuple(state.h.shape)} and {tuple(state.c.shape)} instead."
                )

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
