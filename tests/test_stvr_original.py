"""The ``original`` spatio-temporal recipe: the authors' cells, backbone and pure functions,
each against a hand-computed oracle."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import ConfigError
from relocbench.extract.backbones.base import WEIGHTS_NOTE_RANDOM
from relocbench.io import sha256_file
from relocbench.ops import boundary_points, sparse_image_warp
from relocbench_baselines.stvr.cells import (
    ClipCell,
    OriginalConvLSTM,
    OriginalFlowLSTM,
    OriginalLSTMState,
    OriginalTrajLSTM,
    OriginalWarpLSTM,
    create_cell,
    list_cells,
    register_cell,
    run_sequence,
    tf_layer_norm,
    warp_control_points,
)
from relocbench_baselines.stvr.i3d import (
    InceptionI3DMixed4c,
    build_i3d,
    load_i3d_weights,
    same_padding,
)
from relocbench_baselines.stvr.original import (
    BACKGROUND,
    MATCHING_ACTOR,
    OTHER_ACTOR,
    Clip,
    anchors_inside,
    clip_true_positives,
    count_ground_truth,
    original_mean_ap,
    roi_labels,
    rpn_anchors,
    second_clips,
)

F64 = torch.float64


def _zero_weights(cell: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if not name.startswith("norms."):
                p.zero_()


# --------------------------------------------------------------------------- layer norm
def test_layer_norm_on_a_2x2x2_gate_map():
    # one item, 2 channels of 2x2: values 1..8. TF's layer_norm normalises over channels and
    # space together: mean 4.5, population variance (2 * (3.5^2 + 2.5^2 + 1.5^2 + 0.5^2)) / 8
    # = 42 / 8 = 5.25; then a per-channel scale and offset.
    x = torch.arange(1.0, 9.0, dtype=F64).reshape(1, 2, 2, 2)
    weight = torch.tensor([2.0, 1.0], dtype=F64)
    bias = torch.tensor([0.0, -1.0], dtype=F64)
    out = tf_layer_norm(x, weight, bias)
    sd = math.sqrt(5.25)
    expected = torch.tensor([[[[-3.5, -2.5], [-1.5, -0.5]],
                              [[0.5, 1.5], [2.5, 3.5]]]], dtype=F64) / sd
    expected[:, 0] *= 2.0
    expected[:, 1] -= 1.0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # not a per-channel normalisation: channel 0 keeps a negative mean
    assert out[0, 0].mean() < -0.8


def test_layer_norm_of_a_constant_map_is_the_offset():
    x = torch.full((1, 3, 2, 2), 7.0)
    out = tf_layer_norm(x, torch.ones(3), torch.tensor([0.5, -2.0, 0.0]))
    assert torch.equal(out[0, :, 0, 0], torch.tensor([0.5, -2.0, 0.0]))


# --------------------------------------------------------------------------- warp geometry
def test_sixteen_border_points_of_a_20x20_map():
    pts = boundary_points(20, 20, 4, dtype=F64)
    e = [0.0, 4.75, 9.5, 14.25, 19.0]  # linspace(0, 19, 5)
    expected = ([[0.0, c] for c in e] + [[r, c] for r in e[1:4] for c in (0.0, 19.0)]
                + [[19.0, c] for c in e])
    assert pts.shape == (16, 2)
    assert pts.tolist() == expected


def test_nine_control_points_of_a_20x20_map_and_the_general_rule():
    pts = warp_control_points(20, 20)
    assert pts.tolist() == [[5.0, 5.0], [5.0, 10.0], [5.0, 15.0], [10.0, 5.0], [10.0, 10.0],
                            [10.0, 15.0], [15.0, 5.0], [15.0, 10.0], [15.0, 15.0]]
    # multiples of 5 strictly inside the border: 24 rows -> 5, 10, 15, 20; 16 cols -> 5, 10
    # (15 is the last column); 21 rows -> 5, 10, 15 (20 is the border row)
    assert warp_control_points(24, 16).tolist() == [[r, c] for r in (5.0, 10.0, 15.0, 20.0)
                                                    for c in (5.0, 10.0)]
    assert warp_control_points(21, 21).shape == (9, 2)
    assert warp_control_points(6, 6).shape == (0, 2)


# --------------------------------------------------------------------------- cells
def test_create_cell_original_recipe():
    assert list_cells() == ["convlstm", "flow", "none", "traj", "warp"]
    assert type(create_cell("convlstm", recipe="original", in_channels=4)) is OriginalConvLSTM
    assert type(create_cell("warp", recipe="original", in_channels=4)) is OriginalWarpLSTM
    assert type(create_cell("none", recipe="original", in_channels=4)) is ClipCell
    assert type(create_cell("warp", in_channels=4, hidden_channels=2)).__name__ == "WarpLSTM"
    flow = create_cell("flow", recipe="original", in_channels=4)
    traj = create_cell("traj", recipe="original", in_channels=4)
    assert type(flow) is OriginalFlowLSTM and type(traj) is OriginalTrajLSTM
    assert flow.needs_flow and not traj.needs_flow and traj.links == 5
    assert isinstance(flow, OriginalConvLSTM) and isinstance(traj, OriginalConvLSTM)
    # a cell registered without an original counterpart is refused by the original recipe
    from relocbench_baselines.stvr import cells as cells_module

    @register_cell("compact-only")
    class CompactOnly(ClipCell):
        pass

    try:
        with pytest.raises(ConfigError, match=r"The 'original' recipe has no 'compact-only' cell \(it has "
                                              r"\['convlstm', 'flow', 'none', 'traj', 'warp'\]\); use "
                                              r"recipe='compact'"):
            create_cell("compact-only", recipe="original", in_channels=4)
    finally:
        del cells_module._CELLS["compact-only"]
    assert "compact-only" not in list_cells()
    with pytest.raises(ConfigError, match=r"The 'recipe' parameter must be one of "
                                          r"\['compact', 'original'\]. Got 'paper' instead."):
        create_cell("warp", recipe="paper", in_channels=4)


def test_parameters_of_the_original_cells():
    cell = OriginalConvLSTM(in_channels=4, gate_channels=3)
    shapes = {k: tuple(v.shape) for k, v in cell.named_parameters()}
    expected = {"gate_depthwise.weight": (8, 1, 3, 3), "gate_pointwise.weight": (3, 8, 1, 1),
                "gate_pointwise.bias": (3,), "gates.weight": (16, 3, 1, 1), "gates.bias": (16,)}
    for scope in ("input", "transform", "forget", "output", "state"):
        expected[f"norms.{scope}.weight"] = (4,)
        expected[f"norms.{scope}.bias"] = (4,)
    assert shapes == expected
    warp = OriginalWarpLSTM(in_channels=4, gate_channels=3)
    extra = {k: tuple(v.shape) for k, v in warp.named_parameters() if k not in expected}
    assert extra == {"displacement_depthwise.weight": (8, 1, 1, 1),
                     "displacement_pointwise.weight": (2, 8, 1, 1),
                     "displacement_pointwise.bias": (2,)}
    # Xavier-uniform weights (|w| <= sqrt(6 / (fan_in + fan_out))), zero biases
    limit = math.sqrt(6.0 / (8 + 2))
    w = warp.displacement_pointwise.weight
    assert w.abs().max() <= limit and w.abs().max() > 0
    assert torch.count_nonzero(warp.displacement_pointwise.bias) == 0
    assert torch.count_nonzero(cell.gates.bias) == 0


def test_one_step_with_hand_set_weights():
    # C = 1 on a 1x3 map. Every kernel is zero except: the depthwise centre tap of the x
    # channel (1), the pointwise weight reading it (1) and the 'transform' (j) gate's weight
    # (1). So j = layer_norm(x) and i, f, o are layer norms of zeros, i.e. their offsets.
    cell = OriginalConvLSTM(in_channels=1, gate_channels=1).double()
    _zero_weights(cell)
    with torch.no_grad():
        cell.gate_depthwise.weight[0, 0, 1, 1] = 1.0
        cell.gate_pointwise.weight[0, 0, 0, 0] = 1.0
        cell.gates.weight[1, 0, 0, 0] = 1.0  # gate order i, j, f, o
        cell.norms["forget"].bias.fill_(-1.0)  # sigmoid(-1 + forget bias 1) = 1/2
    x = torch.tensor([0.0, 1.0, 2.0], dtype=F64).reshape(1, 1, 1, 3)
    c_prev = torch.tensor([1.0, 0.0, 0.0], dtype=F64).reshape(1, 1, 1, 3)
    h_prev = torch.tensor([5.0, -3.0, 2.0], dtype=F64).reshape(1, 1, 1, 3)  # read by no kernel
    out, state = cell(x, OriginalLSTMState(c_prev, h_prev))
    # by hand: layer_norm(x) = [-sqrt(1.5), 0, sqrt(1.5)]; with t = tanh(sqrt(1.5)),
    # c_pre = 1/2 * c_prev + sigmoid(0) * tanh(j) = [1/2 - t/2, 0, t/2]; c = layer_norm(c_pre);
    # h = tanh(c) * sigmoid(0) + x
    t = math.tanh(math.sqrt(1.5))
    pre = [0.5 - 0.5 * t, 0.0, 0.5 * t]
    mean = sum(pre) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in pre) / 3)
    c = [(v - mean) / sd for v in pre]
    h = [0.5 * math.tanh(cv) + xv for cv, xv in zip(c, [0.0, 1.0, 2.0])]
    torch.testing.assert_close(state.c.flatten(), torch.tensor(c, dtype=F64), rtol=0, atol=1e-9)
    torch.testing.assert_close(out.flatten(), torch.tensor(h, dtype=F64), rtol=0, atol=1e-9)
    assert state.h is out
    # with a forget bias of 0 the old cell would weigh sigmoid(-1), not 1/2
    cell.forget_bias = 0.0
    _, other = cell(x, OriginalLSTMState(c_prev, h_prev))
    assert not torch.allclose(other.c, state.c, atol=1e-3)


def test_forget_bias_is_a_constant_not_a_parameter():
    cell = create_cell("convlstm", recipe="original", in_channels=2, gate_channels=2)
    assert cell.forget_bias == 1.0
    assert not any("forget_bias" in k for k in cell.state_dict())
    assert not any(k.endswith("bias") and p.numel() == 1 for k, p in cell.named_parameters())


def test_skip_connection_puts_x_inside_h():
    cell = OriginalWarpLSTM(in_channels=3, gate_channels=2)
    _zero_weights(cell)
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    out, state = cell(x)  # zero state: c = layer_norm(0) = 0, h = tanh(0) * 1/2 + x = x
    assert torch.equal(out, x) and state.h is out
    assert torch.count_nonzero(state.c) == 0
    cell = OriginalConvLSTM(in_channels=3, gate_channels=2)
    out, state = cell(x)
    assert (out - x).abs().max() < 1.0  # |tanh(c) * sigmoid(o)| < 1
    assert not torch.allclose(out, x)


def test_warp_cell_shapes_and_sequence():
    cell = create_cell("warp", recipe="original", in_channels=3, gate_channels=4)
    x = torch.randn(2, 4, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    out = run_sequence(cell, x)
    assert out.shape == (2, 4, 3, 20, 20) and torch.isfinite(out).all()
    step, state = cell(x[:, 0])
    assert step.shape == state.c.shape == state.h.shape == (2, 3, 20, 20)
    src, disp = cell.displacements(x[:, 1], state.h)
    assert src.shape == disp.shape == (2, 9, 2)


def test_displacements_read_concat_x_h_at_the_control_points():
    # displacement = separable 1x1 conv of concat([x, h]) (2C channels): set it to read
    # channel 0 of x (the row index) into dy, plus a bias of 0.25 on dx
    cell = OriginalWarpLSTM(in_channels=2, gate_channels=2).double()
    with torch.no_grad():
        cell.displacement_depthwise.weight.fill_(1.0)
        cell.displacement_pointwise.weight.zero_()
        cell.displacement_pointwise.weight[0, 0] = 1.0
        cell.displacement_pointwise.bias.copy_(torch.tensor([0.0, 0.25]))
    rows = torch.arange(20, dtype=F64).reshape(1, 1, 20, 1).expand(1, 1, 20, 20)
    x = torch.cat((rows, torch.zeros(1, 1, 20, 20, dtype=F64)), 1)
    h = torch.randn(1, 2, 20, 20, dtype=F64)
    src, disp = cell.displacements(x, h)
    torch.testing.assert_close(disp[0, :, 0], src[0, :, 0])
    assert torch.all(disp[0, :, 1] == 0.25)
    # the h half of the concatenation: channel 2 of concat is h channel 0
    with torch.no_grad():
        cell.displacement_pointwise.weight.zero_()
        cell.displacement_pointwise.weight[1, 2] = 1.0
    _, disp = cell.displacements(x, h)
    expected = h[0, 0, 5:16:5, 5:16:5].reshape(-1) + 0.25
    torch.testing.assert_close(disp[0, :, 1], expected)


def test_warp_moves_both_h_and_c_with_sixteen_border_points():
    cell = OriginalWarpLSTM(in_channels=2, gate_channels=2).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 20, 20, generator=g, dtype=F64)
    state = OriginalLSTMState(torch.randn(1, 2, 20, 20, generator=g, dtype=F64),
                              torch.randn(1, 2, 20, 20, generator=g, dtype=F64))
    with torch.no_grad():
        cell.displacement_pointwise.bias.copy_(torch.tensor([1.5, -1.0]))
    aligned = cell.align(x, state)
    src, disp = cell.displacements(x, state.h)
    for name in ("c", "h"):
        want, _ = sparse_image_warp(getattr(state, name), src, src + disp,
                                    interpolation_order=2, num_boundary_points=4)
        torch.testing.assert_close(getattr(aligned, name), want)
        assert not torch.allclose(getattr(aligned, name), getattr(state, name))


def test_zero_displacement_warp_equals_the_convlstm():
    g = torch.Generator().manual_seed(4)
    warp = OriginalWarpLSTM(in_channels=3, gate_channels=2).double()
    with torch.no_grad():
        warp.displacement_depthwise.weight.zero_()
        warp.displacement_pointwise.weight.zero_()
    plain = OriginalConvLSTM(in_channels=3, gate_channels=2).double()
    missing = plain.load_state_dict(warp.state_dict(), strict=False)
    assert not missing.missing_keys
    x = torch.randn(1, 3, 3, 20, 20, generator=g, dtype=F64)
    torch.testing.assert_close(run_sequence(warp, x), run_sequence(plain, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["convlstm", "warp"])
def test_gradients_reach_every_parameter(name):
    cell = create_cell(name, recipe="original", in_channels=2, gate_channels=3)
    x = torch.randn(1, 3, 2, 20, 20, generator=torch.Generator().manual_seed(5),
                    requires_grad=True)
    (run_sequence(cell, x) ** 2).sum().backward()
    for pname, p in cell.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, pname
    assert torch.count_nonzero(x.grad) > 0


def test_original_cells_refuse_bad_inputs():
    cell = OriginalWarpLSTM(in_channels=3, gate_channels=2)
    with pytest.raises(ConfigError, match=r"input of OriginalWarpLSTM must be a \(batch, 3, "):
        cell(torch.zeros(1, 4, 20, 20))
    good = torch.zeros(1, 3, 20, 20)
    with pytest.raises(ConfigError, match=r"state of OriginalWarpLSTM must hold c and h of shape"):
        cell(good, OriginalLSTMState(torch.zeros(1, 3, 10, 10), torch.zeros(1, 3, 10, 10)))
    with pytest.raises(ConfigError, match=r"'flow' argument of OriginalWarpLSTM.forward must be "
                                          r"None"):
        cell(good, None, flow=torch.zeros(1, 2, 20, 20))
    small = torch.zeros(1, 3, 6, 6)
    _, state = cell(small)  # the first step needs no control points
    with pytest.raises(ConfigError, match=r"OriginalWarpLSTM with control_stride=5 needs feature "
                                          r"maps larger than 6x6"):
        cell(small, state)
    with pytest.raises(ConfigError, match=r"'gate_channels' parameter of OriginalConvLSTM must "
                                          r"be an int >= 1"):
        OriginalConvLSTM(in_channels=3, gate_channels=0)
    with pytest.raises(ConfigError, match=r"'kernel_size' parameter of OriginalWarpLSTM must be "
                                          r"an odd int"):
        OriginalWarpLSTM(in_channels=3, kernel_size=2)
    with pytest.raises(ConfigError, match=r"'num_boundary_points' parameter of OriginalWarpLSTM "
                                          r"must be an int >= 0"):
        OriginalWarpLSTM(in_channels=3, num_boundary_points=-1)


# --------------------------------------------------------------------------- flow and traj cells
# The authors' cell with this project's flow / trajectory alignment (no counterpart in the
# authors' code): the oracles are the authors' ConvLSTM on hand-moved states.
def _shift(t: torch.Tensor, dy: int, dx: int, *, border: str) -> torch.Tensor:
    """``out[..., i, j] = t[..., i - dy, j - dx]`` for a shift of one pixel at most, the
    border row or column replicated (``border="replicate"``) or zero (``"zeros"``)."""
    out = t
    for axis, d in ((-2, dy), (-1, dx)):
        if d == 0:
            continue
        n = out.shape[axis]
        edge = out.narrow(axis, 0, 1) if d > 0 else out.narrow(axis, n - 1, 1)
        if border == "zeros":
            edge = torch.zeros_like(edge)
        rest = out.narrow(axis, 0, n - 1) if d > 0 else out.narrow(axis, 1, n - 1)
        out = torch.cat((edge, rest) if d > 0 else (rest, edge), axis)
    return out


def _random_state(c: int, size: int, seed: int) -> OriginalLSTMState:
    g = torch.Generator().manual_seed(seed)
    return OriginalLSTMState(torch.randn(2, c, size, size, generator=g, dtype=F64),
                             torch.randn(2, c, size, size, generator=g, dtype=F64))


def test_shift_helper_by_hand():
    t = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert _shift(t, 0, 1, border="replicate").tolist() == [[1, 1, 2], [4, 4, 5]]
    assert _shift(t, 0, -1, border="zeros").tolist() == [[2, 3, 0], [5, 6, 0]]
    assert _shift(t, 1, 0, border="zeros").tolist() == [[0, 0, 0], [1, 2, 3]]


@pytest.mark.parametrize("name", ["flow", "traj"])
def test_flow_and_traj_cells_shapes_and_state(name):
    cell = create_cell(name, recipe="original", in_channels=3, gate_channels=4)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)
    flows = torch.randn(2, 4, 2, 8, 8, generator=g) if name == "flow" else None
    out = run_sequence(cell, x, flows)
    assert out.shape == (2, 4, 3, 8, 8) and torch.isfinite(out).all()
    step, state = cell(x[:, 0])  # the first step needs no flow
    assert isinstance(state, OriginalLSTMState) and state.h is step
    assert step.shape == state.c.shape == state.h.shape == (2, 3, 8, 8)
    kw = {"flow": flows[:, 1]} if name == "flow" else {}
    step, state = cell(x[:, 1], state, **kw)
    assert step.shape == state.c.shape == state.h.shape == (2, 3, 8, 8)
    torch.testing.assert_close(step, out[:, 1])


def test_flow_and_traj_cell_parameters():
    plain = OriginalConvLSTM(in_channels=4, gate_channels=3)
    flow = OriginalFlowLSTM(in_channels=4, gate_channels=3)
    assert flow.state_dict().keys() == plain.state_dict().keys()  # the flow adds no parameter
    traj = OriginalTrajLSTM(in_channels=4, gate_channels=3, links=2, trajectory_channels=5)
    shapes = {k: tuple(v.shape) for k, v in traj.named_parameters() if not k.startswith("norms.")}
    # the gates read concat([x, h_1, h_2]): (1 + 2) * 4 channels; the links' flows come from
    # concat([x, h]) (8 channels) by two 5x5 convolutions
    assert shapes == {"gate_depthwise.weight": (12, 1, 3, 3), "gate_pointwise.weight": (3, 12, 1, 1),
                      "gate_pointwise.bias": (3,), "gates.weight": (16, 3, 1, 1), "gates.bias": (16,),
                      "trajectory.weight": (5, 8, 5, 5), "trajectory.bias": (5,),
                      "traj_to_flow.weight": (4, 5, 5, 5), "traj_to_flow.bias": (4,)}
    assert torch.count_nonzero(traj.traj_to_flow.weight) == 0 and torch.count_nonzero(traj.traj_to_flow.bias) == 0
    limit = math.sqrt(6.0 / (8 * 25 + 5 * 25))  # Xavier-uniform, zero bias
    w = traj.trajectory.weight
    assert 0 < w.abs().max() <= limit and torch.count_nonzero(traj.trajectory.bias) == 0


def test_zero_flow_equals_the_convlstm():
    g = torch.Generator().manual_seed(12)
    flow = OriginalFlowLSTM(in_channels=3, gate_channels=2).double()
    plain = OriginalConvLSTM(in_channels=3, gate_channels=2).double()
    plain.load_state_dict(flow.state_dict())
    x = torch.randn(1, 3, 3, 8, 8, generator=g, dtype=F64)
    zero = torch.zeros(1, 3, 2, 8, 8, dtype=F64)
    torch.testing.assert_close(run_sequence(flow, x, zero), run_sequence(plain, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dy,dx", [(0, 1), (0, -1), (1, 0), (-1, 0)])
def test_one_pixel_flow_equals_the_convlstm_on_the_shifted_state(dy, dx):
    # a constant flow (dy, dx) of one pixel moves h and c by one pixel: warped(p) = state(p - flow),
    # the border replicated; the gates are then the ConvLSTM's on the moved state
    flow = OriginalFlowLSTM(in_channels=3, gate_channels=2).double()
    plain = OriginalConvLSTM(in_channels=3, gate_channels=2).double()
    plain.load_state_dict(flow.state_dict())
    state = _random_state(3, 6, seed=13)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(14), dtype=F64)
    const = torch.tensor([float(dy), float(dx)], dtype=F64).reshape(1, 2, 1, 1).expand(2, 2, 6, 6)
    moved = OriginalLSTMState(_shift(state.c, dy, dx, border="replicate"),
                              _shift(state.h, dy, dx, border="replicate"))
    aligned = flow.align(x, state, flow=const)
    torch.testing.assert_close(aligned.c, moved.c, rtol=0, atol=1e-12)
    torch.testing.assert_close(aligned.h, moved.h, rtol=0, atol=1e-12)
    out, new = flow(x, state, flow=const)
    want, want_state = plain(x, moved)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(new.c, want_state.c, rtol=0, atol=1e-12)
    assert not torch.allclose(out, plain(x, state)[0])


def _convlstm_of_traj(traj: OriginalTrajLSTM) -> OriginalConvLSTM:
    """The ConvLSTM that a zero-flow traj cell equals: every link's depthwise kernel set to the
    first link's, the pointwise weights of the links' copies of h summed."""
    c, links = traj.in_channels, traj.links
    with torch.no_grad():
        dw = traj.gate_depthwise.weight
        for k in range(1, links):
            dw[c * (1 + k):c * (2 + k)] = dw[c:2 * c]
    plain = OriginalConvLSTM(in_channels=c, gate_channels=traj.gate_channels).to(dw.dtype)
    state = {k: v for k, v in traj.state_dict().items() if k in plain.state_dict()}
    pw = traj.gate_pointwise.weight
    state["gate_depthwise.weight"] = dw[:2 * c].clone()
    state["gate_pointwise.weight"] = torch.cat(
        (pw[:, :c], sum(pw[:, c * (1 + k):c * (2 + k)] for k in range(links))), 1)
    plain.load_state_dict(state)
    return plain


def test_traj_cell_at_its_zero_initialisation_equals_the_convlstm_with_summed_links():
    traj = OriginalTrajLSTM(in_channels=3, gate_channels=2, links=3, trajectory_channels=4).double()
    plain = _convlstm_of_traj(traj)
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2, 3, 3, 8, 8, generator=g, dtype=F64)
    torch.testing.assert_close(run_sequence(traj, x), run_sequence(plain, x), rtol=0, atol=1e-12)
    state = _random_state(3, 8, seed=16)
    aligned = traj.align(x[:, 0], state)  # every link the identity: L copies of h, c itself
    torch.testing.assert_close(aligned.h, state.h.repeat(1, 3, 1, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(aligned.c, state.c, rtol=0, atol=1e-12)
    assert torch.count_nonzero(traj.link_flows(x[:, 0], state.h)) == 0


def test_traj_links_sample_h_and_c_and_average_c():
    # two links with constant one-pixel flows, right and left (the bias of the flow layer,
    # channels (dy, dx) per link): h's samples are the two shifted copies (zero padding) in link
    # order, c the mean of its two shifted copies
    traj = OriginalTrajLSTM(in_channels=2, gate_channels=2, links=2).double()
    with torch.no_grad():
        traj.traj_to_flow.bias.copy_(torch.tensor([0.0, 1.0, 0.0, -1.0]))
    state = _random_state(2, 5, seed=17)
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(18), dtype=F64)
    flows = traj.link_flows(x, state.h)
    assert flows.shape == (2, 2, 2, 5, 5)
    assert flows[:, 0, 1].eq(1).all() and flows[:, 1, 1].eq(-1).all() and flows[:, :, 0].eq(0).all()
    aligned = traj.align(x, state)
    right = {n: _shift(getattr(state, n), 0, 1, border="zeros") for n in ("c", "h")}
    left = {n: _shift(getattr(state, n), 0, -1, border="zeros") for n in ("c", "h")}
    torch.testing.assert_close(aligned.h, torch.cat((right["h"], left["h"]), 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(aligned.c, (right["c"] + left["c"]) / 2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["flow", "traj"])
def test_gradients_of_the_flow_and_traj_cells(name):
    cell = create_cell(name, recipe="original", in_channels=2, gate_channels=3)
    g = torch.Generator().manual_seed(19)
    x = torch.randn(1, 3, 2, 8, 8, generator=g, requires_grad=True)
    flows = 0.5 * torch.randn(1, 3, 2, 8, 8, generator=g) if name == "flow" else None
    (run_sequence(cell, x, flows) ** 2).sum().backward()
    for pname, p in cell.named_parameters():
        if pname.startswith("trajectory."):  # upstream of the zero-initialised flow layer
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, pname
        else:
            assert p.grad is not None and torch.count_nonzero(p.grad) > 0, pname
    if name == "traj":  # once the flow layer has moved, the trajectory convolution learns too
        cell.zero_grad()
        with torch.no_grad():
            cell.traj_to_flow.weight.normal_(0, 0.1, generator=g)
        (run_sequence(cell, x) ** 2).sum().backward()
        assert torch.count_nonzero(cell.trajectory.weight.grad) > 0


def test_flow_and_traj_cells_refuse_bad_inputs():
    flow = OriginalFlowLSTM(in_channels=3, gate_channels=2)
    x = torch.zeros(1, 3, 8, 8)
    _, state = flow(x)
    with pytest.raises(ConfigError, match=r"The 'flow' argument of OriginalFlowLSTM.forward must be a "
                                          r"\(batch, 2, height, width\) dense flow for every step after "
                                          r"the first. Got None instead."):
        flow(x, state)
    with pytest.raises(ConfigError, match=r"The 'flows' parameter of run_sequence must be a "
                                          r"\(1, 2, 2, 8, 8\) tensor for the OriginalFlowLSTM cell"):
        run_sequence(flow, torch.zeros(1, 2, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"The 'flow' parameter of dense_image_warp must have shape"):
        flow(x, state, flow=torch.zeros(1, 2, 4, 4))
    traj = OriginalTrajLSTM(in_channels=3, gate_channels=2)
    with pytest.raises(ConfigError, match=r"'flow' argument of OriginalTrajLSTM.forward must be None"):
        traj(x, None, flow=torch.zeros(1, 2, 8, 8))
    with pytest.raises(ConfigError, match=r"The state of OriginalTrajLSTM must hold c and h of shape \(1, 3, 8, 8\)"):
        traj(x, OriginalLSTMState(torch.zeros(1, 3, 8, 8), torch.zeros(1, 15, 8, 8)))
    with pytest.raises(ConfigError, match=r"The 'links' parameter of OriginalTrajLSTM must be an int "
                                          r">= 1. Got 0 instead."):
        OriginalTrajLSTM(in_channels=3, links=0)
    with pytest.raises(ConfigError, match=r"The 'trajectory_kernel_size' parameter of OriginalTrajLSTM "
                                          r"must be an odd int"):
        OriginalTrajLSTM(in_channels=3, trajectory_kernel_size=4)


# --------------------------------------------------------------------------- backbone
def test_same_padding_as_tensorflow():
    assert same_padding(320, 7, 2) == (2, 3)  # (160 - 1) * 2 + 7 - 320 = 5
    assert same_padding(15, 3, 2) == (1, 1)  # (8 - 1) * 2 + 3 - 15 = 2
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(4, 1, 2) == (0, 0)
    assert same_padding(2, 3, 2) == (0, 1)  # (1 - 1) * 2 + 3 - 2 = 1, after


@pytest.fixture(scope="module")
def i3d():
    return build_i3d("none")


def test_i3d_output_shape_and_time_folding(i3d):
    x = torch.rand(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = i3d(x)
        i3d.fold_time = False
        try:
            raw = i3d(x)
        finally:
            i3d.fold_time = True
    assert out.shape == (1, 1024, 4, 4) and i3d.out_channels == 1024
    assert raw.shape == (1, 512, 2, 4, 4)
    # channel t * 512 + c holds channel c of time step t
    assert torch.equal(out[:, :512], raw[:, :, 0]) and torch.equal(out[:, 512:], raw[:, :, 1])


def test_i3d_layer_names_follow_the_pytorch_port(i3d):
    sd = i3d.state_dict()
    assert tuple(sd["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(sd["Mixed_3b.b1b.conv3d.weight"].shape) == (128, 96, 3, 3, 3)
    assert tuple(sd["Mixed_4c.b3b.bn.running_mean"].shape) == (64,)
    assert "Mixed_4c.b2b.bn.bias" in sd and "Conv3d_2c_3x3.bn.running_var" in sd
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == {"Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c",
                        "Mixed_4b", "Mixed_4c"}
    assert not any(".b3a." in k or k.endswith(".bias") and ".conv3d." in k for k in sd)


def test_i3d_batch_norm_is_frozen():
    m = build_i3d("none")
    m.train()
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d)]
    assert bns and all(not bn.training for bn in bns)
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    m(torch.rand(1, 3, 8, 16, 16) * 2 - 1)
    after = m.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    for name, p in m.named_parameters():
        assert p.requires_grad == (".conv3d." in name), name


def test_random_weights_are_marked_and_leave_the_global_seed_alone():
    state = torch.get_rng_state()
    a = build_i3d("none")
    assert torch.equal(torch.get_rng_state(), state)
    assert a.weights_id == "none" and a.weights_note == WEIGHTS_NOTE_RANDOM
    b = build_i3d("none")
    assert torch.equal(a.Mixed_4c.b0.conv3d.weight, b.Mixed_4c.b0.conv3d.weight)


def test_i3d_state_dict_round_trip(tmp_path, i3d):
    sd = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():  # running statistics that are not the defaults
        for k in sd:
            if k.endswith("running_mean"):
                sd[k] = torch.linspace(-0.1, 0.1, sd[k].numel())
    # a full-network file also holds the layers after Mixed_4c
    sd["Mixed_5c.b0.conv3d.weight"] = torch.zeros(384, 832, 1, 1, 1)
    sd["logits.conv3d.bias"] = torch.zeros(400)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(sd, path)
    torch.manual_seed(123)
    other = InceptionI3DMixed4c()
    weights_id, note = load_i3d_weights(other, path)
    assert weights_id == sha256_file(path) == other.weights_id
    assert note == ("state dict rgb_imagenet.pt (pytorch-i3d layout; 2 keys of the layers after "
                    "Mixed_4c not used)")
    x = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    i3d.load_state_dict({**i3d.state_dict(), **{k: v for k, v in sd.items()
                                                 if k in i3d.state_dict()}})
    with torch.no_grad():
        torch.testing.assert_close(other(x), i3d(x), rtol=0, atol=0)


def test_i3d_weights_refused_with_the_file_and_first_key(tmp_path, i3d):
    sd = dict(i3d.state_dict())
    bad = tmp_path / "bad.pt"
    torch.save({**sd, "head.weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match=r"bad\.pt: unexpected key 'head\.weight'"):
        load_i3d_weights(InceptionI3DMixed4c(), bad)
    torch.save({k: v for k, v in sd.items() if k != "Mixed_3c.b1a.bn.running_var"}, bad)
    with pytest.raises(ConfigError, match=r"bad\.pt: missing key 'Mixed_3c\.b1a\.bn\.running_var'"):
        load_i3d_weights(InceptionI3DMixed4c(), bad)
    torch.save({**sd, "Conv3d_2b_1x1.conv3d.weight": torch.zeros(64, 64, 3, 1, 1)}, bad)
    with pytest.raises(ConfigError, match=r"key 'Conv3d_2b_1x1\.conv3d\.weight' has shape "
                                          r"\(64, 64, 3, 1, 1\), expected \(64, 64, 1, 1, 1\)"):
        load_i3d_weights(InceptionI3DMixed4c(), bad)
    torch.save([1, 2], bad)
    with pytest.raises(ConfigError, match=r"expected a state dict \(a dict of tensors\), found list"):
        load_i3d_weights(InceptionI3DMixed4c(), bad)
    with pytest.raises(ConfigError, match=r"missing\.pt: weights file not found"):
        build_i3d(tmp_path / "missing.pt")


def test_i3d_refuses_bad_clips(i3d):
    with pytest.raises(ConfigError, match=r"must be scaled to \[-1, 1\]"):
        i3d(torch.full((1, 3, 8, 16, 16), 255.0))
    with pytest.raises(ConfigError, match=r"must be a floating-point \(batch, 3, 8, height, "
                                          r"width\) RGB clip. Got \(1, 3, 4, 16, 16\)"):
        i3d(torch.zeros(1, 3, 4, 16, 16))


# --------------------------------------------------------------------------- anchors
def test_anchor_set_of_the_20x20_grid():
    a = rpn_anchors()
    assert a.shape == (4800, 4)
    r2 = math.sqrt(2.0)
    # anchor 0: centre (0, 0), scale 0.25, ratio 0.5 (w/h): h = 64 * sqrt(2), w = 64 / sqrt(2)
    np.testing.assert_allclose(a[0], [-32 / r2, -32 * r2, 32 / r2, 32 * r2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a[1], [-64 / r2, -64 * r2, 64 / r2, 64 * r2], atol=1e-12)  # s 0.5
    np.testing.assert_allclose(a[4], [-32, -32, 32, 32], atol=1e-12)  # scale 0.25, ratio 1
    np.testing.assert_allclose(a[11], [-256 * r2, -256 / r2, 256 * r2, 256 / r2], atol=1e-9)
    # row 1, col 2 (centre y = 16, x = 32), scale 0.5, ratio 1: 128 x 128
    np.testing.assert_allclose(a[(1 * 20 + 2) * 12 + 5], [-32, -48, 96, 80], atol=1e-12)


def test_anchors_pruned_at_training():
    a = rpn_anchors().reshape(20, 20, 12, 4)
    inside = anchors_inside(a.reshape(-1, 4)).reshape(20, 20, 12)
    # 64x64 anchors fit when 32 <= 16 i <= 288: i = 2..18, 17 x 17 centres
    assert inside[:, :, 4].sum() == 17 * 17
    # 256x256: 128 <= 16 i <= 192, i = 8..12
    assert inside[:, :, 6].sum() == 25
    # 512 px anchors never fit a 320 image
    assert inside[:, :, [3, 7, 11]].sum() == 0


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 4.0), st.floats(0.25, 4.0), st.integers(1, 4), st.integers(1, 4))
def test_anchor_area_and_ratio(scale, ratio, gh, gw):
    a = rpn_anchors(gh, gw, scales=[scale], aspect_ratios=[ratio])
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    np.testing.assert_allclose(w * h, (scale * 256) ** 2, rtol=1e-9)
    np.testing.assert_allclose(w / h, ratio, rtol=1e-9)
    np.testing.assert_allclose((a[:, 0] + a[:, 2]) / 2,
                               np.tile(16.0 * np.arange(gw), gh), atol=1e-9)


# --------------------------------------------------------------------------- RoI labels
def test_three_way_roi_labels():
    actors = [[0, 0, 10, 10], [20, 0, 30, 10]]
    matching = np.array([True, False])
    rois = [[0, 0, 10, 10],     # the matching actor
            [20, 0, 30, 10],    # another actor
            [0, 0, 10, 5],      # IoU 50 / 100 = 0.5 exactly: positive
            [0, 0, 10, 4.9],    # IoU 0.49: background
            [5, 0, 25, 10],     # IoU 50 / 250 with each: background
            [40, 40, 50, 50]]   # nothing
    assert roi_labels(rois, actors, matching).tolist() == [
        MATCHING_ACTOR, OTHER_ACTOR, MATCHING_ACTOR, BACKGROUND, BACKGROUND, BACKGROUND]
    # ties go to the first actor
    assert roi_labels([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 10]],
                      np.array([False, True])).tolist() == [OTHER_ACTOR]
    assert roi_labels(rois, np.zeros((0, 4)), np.zeros(0, bool)).tolist() == [0] * 6
    with pytest.raises(ConfigError, match=r"'matching' parameter of roi_labels must be a boolean "
                                          r"array with one entry per actor box \(2\)"):
        roi_labels(rois, actors, np.array([True]))


# --------------------------------------------------------------------------- clips and scoring
def test_three_contiguous_clips_per_second():
    assert second_clips(902) == [Clip(902, 0, 21648, 21656), Clip(902, 1, 21656, 21664),
                                 Clip(902, 2, 21664, 21672)]
    with pytest.raises(ConfigError, match=r"'clip_frames' parameter of second_clips must divide"):
        second_clips(902, clip_frames=7)


def test_each_second_counts_once_per_clip():
    seconds = [np.zeros((2, 4)), np.zeros((0, 4)), np.zeros((1, 4))]
    assert count_ground_truth(seconds) == 9
    assert count_ground_truth(seconds, clips_per_second=1) == 3


def test_a_detection_whose_best_box_is_taken_is_false():
    gt = [[0, 0, 10, 10], [0, 0, 10, 6]]
    dets = [[0, 0, 10, 9], [0, 0, 10, 10]]  # the second scores higher
    scores, tp = clip_true_positives(dets, [0.8, 0.9], gt, iou_threshold=0.5)
    # [0,0,10,10] (0.9) takes box 0; [0,0,10,9] (0.8) has IoU 0.9 with box 0 and 0.67 with box 1,
    # but its best box is taken: false positive
    assert scores.tolist() == [0.9, 0.8] and tp.tolist() == [True, False]


def test_original_mean_ap_by_hand():
    g = [[0, 0, 10, 10]]
    far = [[50, 50, 60, 60]]
    pair = {"label": "a", "gt": [g],
            "detections": [(g, [0.9]), (far, [0.8]), (g, [0.7])]}
    empty = {"label": "b", "gt": [np.zeros((0, 4))],
             "detections": [(g, [0.5]), (np.zeros((0, 4)), []), (np.zeros((0, 4)), [])]}
    res = original_mean_ap([pair, empty], iou_threshold=0.5)
    # 3 ground-truth instances (one box x 3 clips); ranks: TP, FP, TP -> precision 1, 1/2, 2/3
    # at recall 1/3, 1/3, 2/3: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert res["ap_per_label"] == {"a": pytest.approx(5 / 9, abs=1e-12)}
    assert res["mean_ap"] == pytest.approx(5 / 9, abs=1e-12)
    assert res["labels_without_ground_truth"] == 1
    with pytest.raises(ConfigError, match=r"pair 0 \(label 'a'\) must have 3 clips of detections "
                                          r"per reference second \(3\). Got 2 instead."):
        original_mean_ap([{"label": "a", "gt": [g], "detections": [(g, [0.9])] * 2}])
