"""Propagation cells of the spatio-temporal baselines: equivalences, shapes, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from relocbench_baselines.stvr.cells import (
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
    sample_links,
    sequence_flows,
)
from relocbench.errors import ConfigError
from relocbench.ops import dense_image_warp

F64 = torch.float64
C_IN, HID, SIZE = 12, 6, 8


def _inputs(b=2, t=3, c=C_IN, size=SIZE, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, size, size, generator=g, dtype=dtype)


def _random_state(b=2, hid=HID, size=SIZE, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return LSTMState(torch.randn(b, hid, size, size, generator=g, dtype=dtype),
                     torch.randn(b, hid, size, size, generator=g, dtype=dtype))


def _shared_weights(src: ConvLSTM, dst: ConvLSTM) -> None:
    """Copy the ConvLSTM part of ``src`` into ``dst`` (same LSTM weights)."""
    with torch.no_grad():
        for name in ("reduce", "input_to_state", "expand"):
            getattr(dst, name).load_state_dict(getattr(src, name).state_dict())


# --------------------------------------------------------------------------- registry
def test_registry_lists_the_five_cells():
    assert list_cells() == ["convlstm", "flow", "none", "traj", "warp"]
    expected = {"none": ClipCell, "convlstm": ConvLSTM, "flow": FlowLSTM, "traj": TrajLSTM,
                "warp": WarpLSTM}
    for name, cls in expected.items():
        cell = create_cell(name, in_channels=C_IN, hidden_channels=HID)
        assert type(cell) is cls and cell.cell_name == name
    assert create_cell("flow", in_channels=4, hidden_channels=2).needs_flow
    assert not create_cell("warp", in_channels=4, hidden_channels=2).needs_flow


def test_register_cell_refuses_a_taken_name():
    with pytest.raises(ConfigError, match=r"A propagation cell named 'warp' is registered "
                                          r"already \(WarpLSTM\)"):
        register_cell("warp")(ClipCell)
    assert create_cell("warp", in_channels=4, hidden_channels=2).__class__ is WarpLSTM


def test_registry_and_hyperparameter_errors():
    with pytest.raises(ConfigError, match=r"'cell' parameter must be one of \['convlstm', "
                                          r"'flow', 'none', 'traj', 'warp'\]\. Got 'gru'"):
        create_cell("gru", in_channels=4)
    with pytest.raises(TypeError):
        ConvLSTM(4)  # hyperparameters are keyword-only
    with pytest.raises(ConfigError, match=r"'hidden_channels' parameter of ConvLSTM must be an "
                                          r"int >= 1\. Got 0 instead"):
        ConvLSTM(in_channels=4, hidden_channels=0)
    with pytest.raises(ConfigError, match=r"'kernel_size' parameter of WarpLSTM must be an odd "
                                          r"int"):
        WarpLSTM(in_channels=4, kernel_size=2)
    with pytest.raises(ConfigError, match=r"'links' parameter of TrajLSTM must be an int >= 1"):
        TrajLSTM(in_channels=4, links=0)
    with pytest.raises(ConfigError, match=r"'interpolation_order' parameter of WarpLSTM must "
                                          r"be an int >= 1 .*Got 0"):
        WarpLSTM(in_channels=4, interpolation_order=0)
    assert WarpLSTM(in_channels=4, interpolation_order=3).aligner.interpolation_order == 3  # odd orders as in TFA
    with pytest.raises(ConfigError, match=r"'num_boundary_points' parameter of WarpLSTM must be "
                                          r"an int >= 0"):
        WarpLSTM(in_channels=4, num_boundary_points=-2)
    with pytest.raises(ConfigError, match=r"'regularization_weight' parameter of WarpLSTM must "
                                          r"be >= 0"):
        WarpLSTM(in_channels=4, regularization_weight=-1.0)


def test_warp_lstm_refuses_maps_too_small_for_its_control_grid():
    cell = WarpLSTM(in_channels=4, hidden_channels=2)
    state = LSTMState(torch.zeros(1, 2, 4, 6), torch.zeros(1, 2, 4, 6))
    with pytest.raises(ConfigError, match=r"WarpLSTM with grid_size=3 needs feature maps larger "
                                          r"than 4x4 .* Got 4x6 instead"):
        cell(torch.zeros(1, 4, 4, 6), state)
    out, _ = WarpLSTM(in_channels=4, hidden_channels=2, grid_size=1)(torch.zeros(1, 4, 4, 6),
                                                                     state)
    assert out.shape == (1, 4, 4, 6)


def test_input_and_state_shape_errors():
    cell = ConvLSTM(in_channels=C_IN, hidden_channels=HID)
    with pytest.raises(ConfigError, match=r"input of ConvLSTM must be a \(batch, 12, height, "
                                          r"width\) tensor\. Got \(2, 5, 8, 8\)"):
        cell(torch.zeros(2, 5, 8, 8))
    with pytest.raises(ConfigError, match=r"state of ConvLSTM must hold h and c of shape "
                                          r"\(2, 6, 8, 8\)"):
        cell(torch.zeros(2, C_IN, 8, 8), _random_state(hid=3))
    with pytest.raises(ConfigError, match=r"input of ClipCell must be"):
        ClipCell(in_channels=3)(torch.zeros(1, 4, 2, 2))
    flow_cell = FlowLSTM(in_channels=C_IN, hidden_channels=HID)
    with pytest.raises(ConfigError, match=r"'flow' argument of FlowLSTM.forward must be a "
                                          r"\(batch, 2, height, width\) dense flow"):
        flow_cell(torch.zeros(2, C_IN, 8, 8), _random_state())
    with pytest.raises(ConfigError, match=r"'flows' parameter of run_sequence must be a "
                                          r"\(2, 3, 2, 8, 8\) tensor for the FlowLSTM cell\. "
                                          r"Got None"):
        run_sequence(flow_cell, _inputs())
    with pytest.raises(ConfigError, match=r"'features' parameter of run_sequence must be a "
                                          r"\(batch, time, channels, height, width\) tensor"):
        run_sequence(flow_cell, torch.zeros(2, C_IN, 8, 8))


# --------------------------------------------------------------------------- shapes, gradients
_UPSTREAM_OF_ZERO_INIT = {
    "traj": ("aligner.input_to_traj.weight", "aligner.input_to_traj.bias",
             "aligner.state_to_traj.weight", "aligner.state_to_traj.bias"),
}


@pytest.mark.parametrize("name", ["none", "convlstm", "flow", "traj", "warp"])
def test_every_cell_shapes_and_gradients(name):
    torch.manual_seed(0)
    cell = create_cell(name, in_channels=C_IN, hidden_channels=HID)
    x = _inputs().requires_grad_()
    flows = 0.5 * torch.randn(2, 3, 2, SIZE, SIZE)
    out = run_sequence(cell, x, flows)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, param in cell.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        if pname in _UPSTREAM_OF_ZERO_INIT.get(name, ()):
            # gradients reach these only once the zero-initialised flow layer has moved
            assert param.grad.abs().sum() == 0, pname
        else:
            assert param.grad.abs().sum() > 0, pname  # zero-initialised flow convs learn
    if name == "traj":  # once the flow layer is non-zero, the trajectory CNN learns too
        with torch.no_grad():
            cell.aligner.traj_to_flow.weight.normal_(0, 0.1)
        cell.zero_grad()
        run_sequence(cell, x).square().sum().backward()
        for pname in _UPSTREAM_OF_ZERO_INIT["traj"]:
            assert cell.get_parameter(pname).grad.abs().sum() > 0, pname
    if name == "none":
        assert out.data_ptr() != x.data_ptr()
        torch.testing.assert_close(out, x, rtol=0, atol=0)
        assert sum(p.numel() for p in cell.parameters()) == 0
    else:
        _, state = cell(x[:, 0])
        assert state.h.shape == state.c.shape == (2, HID, SIZE, SIZE)


def test_cells_are_deterministic_and_do_not_mutate_inputs():
    x = _inputs()
    before = x.clone()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        cell = create_cell("warp", in_channels=C_IN, hidden_channels=HID)
        with torch.no_grad():
            cell.aligner.displacement.weight.normal_(0, 0.3)
        outs.append(run_sequence(cell, x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_convlstm_step_matches_the_equations():
    torch.manual_seed(1)
    cell = ConvLSTM(in_channels=C_IN, hidden_channels=HID)
    x = _inputs()[:, 0]
    state = _random_state()
    out, new = cell(x, state)
    xb = torch.relu(cell.reduce(x))
    gates = cell.input_to_state(xb) + cell.state_to_state(state.h)
    i, f, o, g = gates.chunk(4, 1)
    c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    torch.testing.assert_close(new.c, c)
    torch.testing.assert_close(new.h, h)
    torch.testing.assert_close(out, x + cell.expand(h))


# --------------------------------------------------------------------------- zero-flow oracles
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (F64, 1e-12)])
def test_warp_lstm_with_zero_displacements_equals_convlstm(dtype, atol):
    torch.manual_seed(2)
    warp = WarpLSTM(in_channels=C_IN, hidden_channels=HID, num_boundary_points=2).to(dtype)
    conv = ConvLSTM(in_channels=C_IN, hidden_channels=HID).to(dtype)
    _shared_weights(warp, conv)
    conv.state_to_state.load_state_dict(warp.state_to_state.state_dict())
    x = _inputs(dtype=dtype)
    torch.testing.assert_close(run_sequence(warp, x), run_sequence(conv, x), atol=atol, rtol=0)
    state = _random_state(dtype=dtype)
    aligned = warp.align(x[:, 0], state)
    assert torch.count_nonzero(aligned.flow) == 0
    # and it is not the identity once the displacement convolution predicts something
    with torch.no_grad():
        warp.aligner.displacement.bias.copy_(torch.tensor([0.7, -0.4], dtype=dtype))
    assert not torch.allclose(run_sequence(warp, x), run_sequence(conv, x), atol=1e-3)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (F64, 1e-12)])
def test_traj_lstm_with_zero_flows_equals_convlstm_with_summed_1x1_state_conv(dtype, atol):
    torch.manual_seed(4)
    links = 5
    traj = TrajLSTM(in_channels=C_IN, hidden_channels=HID, links=links).to(dtype)
    assert traj.state_to_state.kernel_size == (1, 1)
    assert traj.state_to_state.in_channels == links * HID
    conv = ConvLSTM(in_channels=C_IN, hidden_channels=HID, state_kernel_size=1).to(dtype)
    _shared_weights(traj, conv)
    with torch.no_grad():
        w = traj.state_to_state.weight  # (4H, L*H, 1, 1), link-major input channels
        conv.state_to_state.weight.copy_(w.reshape(4 * HID, links, HID, 1, 1).sum(1))
    x = _inputs(dtype=dtype)
    torch.testing.assert_close(run_sequence(traj, x), run_sequence(conv, x), atol=atol, rtol=0)
    aligned = traj.align(x[:, 0], _random_state(dtype=dtype))
    assert aligned.flow.shape == (2, links, 2, SIZE, SIZE)
    assert torch.count_nonzero(aligned.flow) == 0


def test_flow_lstm_with_zero_flow_equals_convlstm_and_follows_a_shift():
    torch.manual_seed(5)
    flow_cell = FlowLSTM(in_channels=C_IN, hidden_channels=HID)
    conv = ConvLSTM(in_channels=C_IN, hidden_channels=HID)
    _shared_weights(flow_cell, conv)
    conv.state_to_state.load_state_dict(flow_cell.state_to_state.state_dict())
    x = _inputs()
    zero = torch.zeros(2, 3, 2, SIZE, SIZE)
    torch.testing.assert_close(run_sequence(flow_cell, x, zero), run_sequence(conv, x),
                               atol=1e-5, rtol=0)
    state = _random_state()
    shift = torch.zeros(2, 2, SIZE, SIZE)
    shift[:, 1] = 2.0  # content moved two columns right
    aligned = flow_cell.align(x[:, 0], state, flow=shift)
    torch.testing.assert_close(aligned.hidden[..., 2:], state.h[..., :-2], atol=1e-5, rtol=0)
    torch.testing.assert_close(aligned.cell, state.c, rtol=0, atol=0)
    both = FlowLSTM(in_channels=C_IN, hidden_channels=HID, warp_cell=True)
    aligned = both.align(x[:, 0], state, flow=shift)
    torch.testing.assert_close(aligned.cell, dense_image_warp(state.c, shift))


def test_sample_links_by_hand():
    # one 1x4 map [1, 2, 3, 4], three links: identity, one column right, half a column left;
    # warped(p) = state(p - flow), zero outside the map, bilinear between columns
    state = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64).reshape(1, 1, 1, 4)
    flows = torch.zeros(1, 3, 2, 1, 4, dtype=F64)
    flows[:, 1, 1] = 1.0
    flows[:, 2, 1] = -0.5
    out = sample_links(state, flows)
    assert out.shape == (1, 3, 1, 1, 4)
    want = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0], [1.5, 2.5, 3.5, 2.0]], dtype=F64)
    torch.testing.assert_close(out[0, :, 0, 0], want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- warp LSTM details
def test_control_point_layout_matches_the_paper_and_scales():
    paper = control_points(20, 20).tolist()
    assert paper == [[r, c] for r in (5.0, 10.0, 15.0) for c in (5.0, 10.0, 15.0)]
    assert control_points(8, 12).tolist() == [[r, c] for r in (2.0, 4.0, 6.0)
                                              for c in (3.0, 6.0, 9.0)]
    assert control_points(10, 10, 1).tolist() == [[5.0, 5.0]]


def test_warp_lstm_moves_control_points_by_the_predicted_displacement():
    torch.manual_seed(6)
    cell = WarpLSTM(in_channels=C_IN, hidden_channels=HID, num_boundary_points=1).double()
    with torch.no_grad():
        cell.aligner.displacement.bias.copy_(torch.tensor([1.0, -1.0], dtype=F64))
    x = _inputs(dtype=F64)[:, 0]
    state = _random_state(dtype=F64)
    with torch.no_grad():
        aligned = cell.align(x, state)
    # the flow at each destination (p_i + d) is d, the flow at the image corners is 0
    for r, c in control_points(SIZE, SIZE).long().tolist():
        np.testing.assert_allclose(aligned.flow[:, :, r + 1, c - 1].numpy(),
                                   [[1.0, -1.0]] * 2, atol=1e-10)
        torch.testing.assert_close(aligned.hidden[:, :, r + 1, c - 1], state.h[:, :, r, c])
        torch.testing.assert_close(aligned.cell[:, :, r + 1, c - 1], state.c[:, :, r, c])
    for r, c in [(0, 0), (0, SIZE - 1), (SIZE - 1, 0), (SIZE - 1, SIZE - 1)]:
        np.testing.assert_allclose(aligned.flow[:, :, r, c].numpy(), 0.0, atol=1e-10)


def test_warp_lstm_displacements_read_the_1x1_conv_at_control_points():
    torch.manual_seed(7)
    cell = WarpLSTM(in_channels=C_IN, hidden_channels=HID)
    with torch.no_grad():
        cell.aligner.displacement.weight.normal_()
    x = _inputs()[:, 0]
    state = _random_state()
    xb = torch.relu(cell.reduce(x))
    src, disp = cell.aligner.displacements(xb, state.h)
    field = cell.aligner.displacement(torch.cat((xb, state.h), 1))
    for k, (r, c) in enumerate(src[0].long().tolist()):
        torch.testing.assert_close(disp[:, k], field[:, :, r, c])


@pytest.mark.parametrize("name", ["warp", "traj", "flow"])
def test_recurrent_cells_gradcheck_float64(name):
    torch.manual_seed(8)
    cell = create_cell(name, in_channels=3, hidden_channels=2).double()
    with torch.no_grad():  # non-trivial flows so the warp's gradients are exercised
        if name == "warp":
            cell.aligner.displacement.weight.normal_(0, 0.5)
            cell.aligner.displacement.bias.copy_(torch.tensor([0.3, -0.2]))
        if name == "traj":
            cell.aligner.traj_to_flow.weight.normal_(0, 0.1)
            cell.aligner.traj_to_flow.bias.uniform_(0.1, 0.4)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(1, 3, 5, 5, generator=g, dtype=F64, requires_grad=True)
    h = torch.randn(1, 2, 5, 5, generator=g, dtype=F64, requires_grad=True)
    c = torch.randn(1, 2, 5, 5, generator=g, dtype=F64, requires_grad=True)
    flow = 0.3 + 0.3 * torch.rand(1, 2, 5, 5, generator=g, dtype=F64)

    def step(x_, h_, c_):
        out, state = cell(x_, LSTMState(h_, c_), flow=flow if name == "flow" else None)
        return out, state.h, state.c

    assert torch.autograd.gradcheck(step, (x, h, c), atol=1e-6)


# --------------------------------------------------------------------------- optical flow
def _texture(height, width, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return smooth.astype(np.uint8)


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_feature_flow_recovers_a_global_shift(method):
    big = _texture(96, 112)
    previous = big[8:72, 8:88]           # 64 x 80
    current = big[8 - 2:72 - 2, 8 - 4:88 - 4]  # content moved 2 rows down, 4 columns right
    flow = feature_flow(np.stack([current] * 3, -1), np.stack([previous] * 3, -1),
                        size=(16, 20), method=method)
    assert flow.shape == (2, 16, 20) and flow.dtype == torch.float32
    inner = flow[:, 3:-3, 3:-3]
    # 2 rows and 4 columns in frame pixels are 0.5 and 1.0 feature pixels at stride 4
    assert inner[0].median().item() == pytest.approx(0.5, abs=0.1)
    assert inner[1].median().item() == pytest.approx(1.0, abs=0.1)
    again = feature_flow(current, previous, size=(16, 20), method=method)
    torch.testing.assert_close(flow, again, rtol=0, atol=1e-4)  # gray and RGB agree
    assert torch.equal(again, feature_flow(current, previous, size=(16, 20), method=method))
    # warping the previous frame with the full-size flow reproduces the current frame
    full = feature_flow(current, previous, size=(64, 80), method=method)
    prev_t = torch.from_numpy(previous.astype(np.float32))[None, None]
    warped = dense_image_warp(prev_t, full[None])[0, 0, 8:-8, 8:-8]
    cur_t = torch.from_numpy(current.astype(np.float32))[8:-8, 8:-8]
    assert (warped - cur_t).abs().mean() < 0.3 * (prev_t[0, 0, 8:-8, 8:-8] - cur_t).abs().mean()


def test_sequence_flows_and_errors():
    frames = [_texture(32, 32, seed=s) for s in range(3)]
    flows = sequence_flows(frames, size=(8, 8))
    assert flows.shape == (3, 2, 8, 8)
    assert torch.count_nonzero(flows[0]) == 0
    torch.testing.assert_close(flows[2], feature_flow(frames[2], frames[1], size=(8, 8)))
    with pytest.raises(ConfigError, match=r"'method' parameter of feature_flow must be one of "
                                          r"\['farneback', 'dis'\]\. Got 'raft'"):
        feature_flow(frames[1], frames[0], size=(8, 8), method="raft")
    with pytest.raises(ConfigError, match=r"'current' parameter of feature_flow must be a uint8"):
        feature_flow(frames[1].astype(np.float32), frames[0], size=(8, 8))
    with pytest.raises(ConfigError, match=r"'previous' frame of feature_flow must have the "
                                          r"shape of 'current'"):
        feature_flow(frames[1], frames[0][:16], size=(8, 8))
    with pytest.raises(ConfigError, match=r"'size' parameter of feature_flow must be"):
        feature_flow(frames[1], frames[0], size=(8,))
    with pytest.raises(ConfigError, match=r"'frames' parameter of sequence_flows must hold"):
        sequence_flows([], size=(8, 8))
