"""Oracles and reference comparisons for relocbench.ops (reference-algorithms.md, Sec. 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import ConfigError
from relocbench.ops import (
    bilinear_sample,
    boundary_points,
    dense_image_warp,
    interpolate_spline,
    phi,
    sparse_image_warp,
)

F64 = torch.float64


# --------------------------------------------------------------------------- plain references
def _np_phi(r2, order):
    """r^k (odd k) or r^k log r (even k) of squared distances, guarded as TFA guards them."""
    c = np.maximum(r2, 1e-10)
    if order == 2:
        return 0.5 * r2 * np.log(c)
    if order == 4:
        return 0.5 * r2 ** 2 * np.log(c)
    r = np.sqrt(c)
    return r ** order * np.log(r) if order % 2 == 0 else r ** order


def _np_spline(train, values, query, order, lam):
    """One item, straight from the formulas, with numpy."""
    n, d = train.shape
    a = _np_phi(((train[:, None] - train[None]) ** 2).sum(-1), order)
    if lam > 0:
        a = a + lam * np.eye(n)
    b = np.concatenate([train, np.ones((n, 1))], 1)
    lhs = np.block([[a, b], [b.T, np.zeros((d + 1, d + 1))]])
    rhs = np.concatenate([values, np.zeros((d + 1, values.shape[1]))], 0)
    wv = np.linalg.solve(lhs, rhs)
    w, v = wv[:n], wv[n:]
    q = _np_phi(((query[:, None] - train[None]) ** 2).sum(-1), order)
    return q @ w + np.concatenate([query, np.ones((len(query), 1))], 1) @ v


def _np_bilinear(img, rows, cols):
    """TFA interpolate_bilinear for one (H, W, C) image: clamped floor and fraction."""
    h, w, _ = img.shape
    r0 = np.clip(np.floor(rows), 0, h - 2).astype(int)
    c0 = np.clip(np.floor(cols), 0, w - 2).astype(int)
    ar = np.clip(rows - r0, 0, 1)[:, None]
    ac = np.clip(cols - c0, 0, 1)[:, None]
    top = img[r0, c0] * (1 - ac) + img[r0, c0 + 1] * ac
    bottom = img[r0 + 1, c0] * (1 - ac) + img[r0 + 1, c0 + 1] * ac
    return top * (1 - ar) + bottom * ar


def _np_sparse_warp(img, src, dst, order, lam, nb):
    """One (H, W, C) item of TFA sparse_image_warp with numpy."""
    h, w, c = img.shape
    flows = dst - src
    if nb > 0:
        ys, xs = np.meshgrid(np.linspace(0, h - 1, nb + 1), np.linspace(0, w - 1, nb + 1),
                             indexing="ij")
        border = (xs == 0) | (xs == w - 1) | (ys == 0) | (ys == h - 1)
        bp = np.stack([ys[border], xs[border]], -1)
        dst = np.concatenate([dst, bp])
        flows = np.concatenate([flows, np.zeros_like(bp)])
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
    grid = grid.reshape(-1, 2).astype(float)
    dense = _np_spline(dst, flows, grid, order, lam)
    q = grid - dense
    return _np_bilinear(img, q[:, 0], q[:, 1]).reshape(h, w, c), dense.reshape(h, w, 2)


# --------------------------------------------------------------------------- spline oracles
def _oracle_points(d):
    np.random.seed(0)
    train = np.random.uniform(size=[1, 10, d])
    query = np.random.uniform(size=[1, 4, d])
    if d == 1:
        values = np.mean((train - 0.5) ** 3 - 0.25 * train + 10 * np.sin(10 * train), -1,
                         keepdims=True)
    else:
        values = np.sum((train - 0.5) ** 2 + 0.25 * train + np.sin(15 * train), -1,
                        keepdims=True)
    return torch.tensor(train), torch.tensor(values), torch.tensor(query)


# TensorFlow Addons' published query values (interpolate_spline_test.py, HARDCODED_QUERY_VALUES
# of the 1-D and 3-D problems above), every order 1-4 with and without regularisation.
TFA_QUERY_VALUES = {
    (1, 1, 0.0): [6.2647187603, -7.84362604077, -5.63690142322, 1.42928896387],
    (1, 1, 0.01): [6.77688289946, -8.02163669853, -5.79491157027, 1.4063285693],
    (1, 2, 0.0): [8.67110264937, -8.41281390883, -5.80190044693, 1.50155606059],
    (1, 2, 0.01): [6.70797816797, -7.49709587663, -5.28965776238, 1.52284731741],
    (1, 3, 0.0): [9.37691802935, -8.50390141515, -5.80786417426, 1.63467762122],
    (1, 3, 0.01): [4.47106304758, -5.71266128361, -3.92529303296, 1.86755293857],
    (1, 4, 0.0): [9.58172461111, -8.51432104771, -5.80967675388, 1.63361164256],
    (1, 4, 0.01): [-3.87902711352, -0.0253462273846, 1.79857618022, -0.769339675725],
    (3, 1, 0.0): [1.06609663962, 1.28894849357, 1.10882405595, 1.63966936885],
    (3, 1, 0.01): [1.03123780748, 1.2952930985, 1.10366822954, 1.65265118569],
    (3, 2, 0.0): [0.627787735064, 1.43802857251, 1.00194632358, 1.91667538215],
    (3, 2, 0.01): [0.730159985046, 1.41702471595, 1.0065827217, 1.85758519312],
    (3, 3, 0.0): [0.350460417862, 1.67223539464, 1.00475331246, 2.31580322491],
    (3, 3, 0.01): [0.624557250556, 1.63138876667, 0.976588193162, 2.12511237866],
    (3, 4, 0.0): [0.898129669986, 1.24434133638, -0.938056116931, 1.59910338833],
    (3, 4, 0.01): [0.0930360338179, -3.38791305538, -1.00969032567, 0.745535080382],
}


@pytest.mark.parametrize("d, order, lam", sorted(TFA_QUERY_VALUES))
def test_interpolate_spline_oracles(d, order, lam):
    train, values, query = _oracle_points(d)
    out = interpolate_spline(train, values, query, order, lam)
    assert out.shape == (1, 4, 1)
    # the published values carry 12 significant digits
    np.testing.assert_allclose(out[0, :, 0].numpy(), TFA_QUERY_VALUES[d, order, lam], rtol=1e-10,
                               atol=1e-10)


def test_odd_order_is_not_an_even_kernel():
    """Order 3 is r^3 (not r^3 log r nor r^2 log r): on the 1-D problem it differs from 2 and 4."""
    train, values, query = _oracle_points(1)
    outs = {k: interpolate_spline(train, values, query, k)[0, :, 0].numpy() for k in (2, 3, 4)}
    assert np.abs(outs[3] - outs[2]).min() > 1e-3
    assert np.abs(outs[3] - outs[4]).min() > 1e-4


def test_phi_at_zero():
    zero = torch.zeros(1, dtype=F64)
    assert phi(zero, 1).item() == pytest.approx(1e-5, abs=1e-15)
    assert phi(zero, 2).item() == 0.0
    assert phi(zero, 4).item() == 0.0
    # odd k: max(r2, EPS)^(k/2); other even k: the prefactor is clamped too (TFA's guards)
    assert phi(zero, 3).item() == pytest.approx(1e-15, rel=1e-12)
    assert phi(zero, 5).item() == pytest.approx(1e-25, rel=1e-12)
    assert phi(zero, 6).item() == pytest.approx(0.5 * 1e-30 * np.log(1e-10), rel=1e-12)
    r2 = torch.tensor([4.0], dtype=F64)  # r = 2
    assert phi(r2, 1).item() == pytest.approx(2.0)
    assert phi(r2, 2).item() == pytest.approx(0.5 * 4 * np.log(4))
    assert phi(r2, 3).item() == pytest.approx(8.0)
    assert phi(r2, 4).item() == pytest.approx(0.5 * 16 * np.log(4))
    assert phi(r2, 5).item() == pytest.approx(32.0)
    assert phi(r2, 6).item() == pytest.approx(64 * np.log(2))
    assert phi(r2, 7).item() == pytest.approx(128.0)
    assert phi(r2, np.int64(3)).item() == pytest.approx(8.0)  # numpy integers are ints too


@settings(max_examples=50, deadline=None)
@given(r=st.floats(1e-4, 1e3), order=st.integers(1, 9))
def test_phi_is_r_to_the_k_or_times_log_r(r, order):
    """phi(r^2) = r^k for odd k and r^k log r for even k, away from 0."""
    got = phi(torch.tensor([r * r], dtype=F64), order).item()
    want = r ** order * (np.log(r) if order % 2 == 0 else 1.0)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("lam", [0.0, 0.05])
@pytest.mark.parametrize("b, n, d, k, m", [(1, 3, 1, 1, 5), (3, 7, 2, 2, 11), (2, 12, 3, 4, 6)])
def test_interpolate_spline_matches_numpy_reference(order, lam, b, n, d, k, m):
    rng = np.random.default_rng(1000 * order + 10 * n + b)
    train = rng.uniform(size=(b, n, d))
    values = rng.normal(size=(b, n, k))
    query = rng.uniform(-0.2, 1.2, size=(b, m, d))
    out = interpolate_spline(torch.tensor(train), torch.tensor(values), torch.tensor(query),
                             order, lam).numpy()
    for i in range(b):  # the batched solve equals per-item solves
        np.testing.assert_allclose(out[i], _np_spline(train[i], values[i], query[i], order, lam),
                                   rtol=1e-8, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.sampled_from([1, 2, 3, 4]), n=st.integers(3, 9))
def test_spline_interpolates_and_reproduces_affine_functions(seed, order, n):
    rng = np.random.default_rng(seed)
    # well-separated centres: jittered grid cells
    cells = rng.permutation(16)[:n]
    train = np.stack([cells // 4, cells % 4], -1) + rng.uniform(0.2, 0.8, size=(n, 2))
    query = rng.uniform(0, 4, size=(7, 2))
    t = torch.tensor(train[None])
    values = torch.tensor(rng.normal(size=(1, n, 1)))
    at_train = interpolate_spline(t, values, t, order)
    np.testing.assert_allclose(at_train.numpy(), values.numpy(), atol=1e-6)
    coef = rng.normal(size=3)
    affine = lambda p: (p @ coef[:2] + coef[2])[..., None]  # noqa: E731
    out = interpolate_spline(t, torch.tensor(affine(train)[None]), torch.tensor(query[None]),
                             order)
    np.testing.assert_allclose(out[0].numpy(), affine(query), atol=1e-6)


# --------------------------------------------------------------------------- sampler oracles
def test_bilinear_sample_oracle():
    grid = torch.arange(12, dtype=F64).reshape(1, 1, 4, 3)
    q = torch.tensor([[[0, 0], [1, 0], [2, 0.5], [1.5, 1.5], [3, 2]]], dtype=F64)
    out = bilinear_sample(grid, q)
    assert out.shape == (1, 5, 1)
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0, 3, 6.5, 6, 11], atol=1e-12)


def test_bilinear_sample_replicates_border_and_matches_numpy():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 5, 6, 3))  # (B, H, W, C)
    q = rng.uniform(-3, 9, size=(2, 40, 2))
    out = bilinear_sample(torch.tensor(img).permute(0, 3, 1, 2), torch.tensor(q)).numpy()
    for i in range(2):
        np.testing.assert_allclose(out[i], _np_bilinear(img[i], q[i, :, 0], q[i, :, 1]),
                                   atol=1e-12)


def test_bilinear_sample_zero_padding():
    grid = torch.ones(1, 1, 3, 3, dtype=F64)
    q = torch.tensor([[[1, 1], [-0.5, 1], [1, 2.25], [-2, -2]]], dtype=F64)
    out = bilinear_sample(grid, q, padding_mode="zeros")[0, :, 0]
    np.testing.assert_allclose(out.numpy(), [1, 0.5, 0.75, 0], atol=1e-12)


def test_dense_image_warp_integer_shift():
    img = torch.arange(20, dtype=F64).reshape(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5, dtype=F64)
    flow[:, 1] = 1.0  # out(i, j) = img(i, j - 1), column 0 replicated
    out = dense_image_warp(img, flow)[0, 0]
    np.testing.assert_allclose(out[:, 1:].numpy(), img[0, 0, :, :-1].numpy(), atol=1e-12)
    np.testing.assert_allclose(out[:, 0].numpy(), img[0, 0, :, 0].numpy(), atol=1e-12)
    flow[:, 1] = 0.0
    flow[:, 0] = -1.0  # out(i, j) = img(i + 1, j); zero padding below the last row
    out = dense_image_warp(img, flow, padding_mode="zeros")[0, 0]
    np.testing.assert_allclose(out[:-1].numpy(), img[0, 0, 1:].numpy(), atol=1e-12)
    np.testing.assert_allclose(out[-1].numpy(), 0.0, atol=1e-12)


# --------------------------------------------------------------------------- sparse warp
def _seven_by_seven(order):
    img = torch.arange(49, dtype=F64).reshape(1, 1, 7, 7)
    src = torch.tensor([[[3.0, 3.0]]], dtype=F64)
    dst = torch.tensor([[[3.0, 4.0]]], dtype=F64)
    out, flow = sparse_image_warp(img, src, dst, interpolation_order=order,
                                  num_boundary_points=1)
    return img, out, flow


def test_sparse_image_warp_oracle_order2():
    img, out, flow = _seven_by_seven(2)
    np.testing.assert_allclose(flow[0, :, 3, 4].numpy(), [0, 1], atol=1e-12)
    assert out[0, 0, 3, 4].item() == pytest.approx(img[0, 0, 3, 3].item(), abs=1e-10)
    np.testing.assert_allclose(flow[0, :, 3, 3].numpy(), [0, 0.93468601], atol=1e-8)
    np.testing.assert_allclose(flow[0, :, 4, 5].numpy(), [0, 0.6942381], atol=1e-7)
    for r, c in [(0, 0), (0, 6), (6, 0), (6, 6)]:
        np.testing.assert_allclose(flow[0, :, r, c].numpy(), [0, 0], atol=1e-12)


def test_sparse_image_warp_oracle_order1():
    _, _, flow = _seven_by_seven(1)
    np.testing.assert_allclose(flow[0, :, 3, 3].numpy(), [0, 0.74470535], atol=1e-8)
    np.testing.assert_allclose(flow[0, :, 3, 4].numpy(), [0, 1], atol=1e-12)


def test_boundary_points_layout():
    assert boundary_points(7, 9, 0).shape == (0, 2)
    np.testing.assert_array_equal(boundary_points(7, 9, 1).numpy(),
                                  [[0, 0], [0, 8], [6, 0], [6, 8]])
    two = boundary_points(7, 9, 2).numpy()
    np.testing.assert_array_equal(two, [[0, 0], [0, 4], [0, 8], [3, 0], [3, 8], [6, 0],
                                        [6, 4], [6, 8]])
    assert boundary_points(20, 20, 5).shape == (20, 2)


@pytest.mark.parametrize("order", [1, 2, 4])
@pytest.mark.parametrize("nb", [0, 1, 3])
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (F64, 1e-12)])
def test_zero_displacement_is_identity(order, nb, dtype, atol):
    g = torch.Generator().manual_seed(order * 10 + nb)
    img = torch.rand(2, 3, 8, 6, generator=g, dtype=dtype)
    pts = torch.rand(2, 4, 2, generator=g, dtype=dtype) * torch.tensor([7.0, 5.0], dtype=dtype)
    out, flow = sparse_image_warp(img, pts, pts.clone(), interpolation_order=order,
                                  num_boundary_points=nb)
    assert torch.count_nonzero(flow) == 0
    torch.testing.assert_close(out, img, atol=atol, rtol=0)


@pytest.mark.parametrize("order, lam, nb", [(1, 0.0, 1), (2, 0.0, 2), (2, 0.1, 0), (4, 0.0, 1)])
def test_sparse_image_warp_matches_numpy_reference(order, lam, nb):
    rng = np.random.default_rng(order + nb)
    b, h, w, c = 3, 9, 7, 2
    img = rng.normal(size=(b, h, w, c))
    src = rng.uniform(1, 5, size=(b, 5, 2))
    dst = src + rng.normal(scale=1.0, size=src.shape)
    out, flow = sparse_image_warp(torch.tensor(img).permute(0, 3, 1, 2), torch.tensor(src),
                                  torch.tensor(dst), interpolation_order=order,
                                  regularization_weight=lam, num_boundary_points=nb)
    for i in range(b):
        ref_out, ref_flow = _np_sparse_warp(img[i], src[i], dst[i], order, lam, nb)
        np.testing.assert_allclose(flow[i].permute(1, 2, 0).numpy(), ref_flow, atol=1e-8)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref_out, atol=1e-8)


def test_sparse_image_warp_moves_control_points():
    """With lambda = 0, out(dest_i) = image(src_i) for every control point."""
    g = torch.Generator().manual_seed(5)
    img = torch.rand(2, 1, 12, 12, generator=g, dtype=F64)
    src = torch.tensor([[[3.0, 3.0], [8.0, 7.0]], [[4.0, 6.0], [9.0, 2.0]]], dtype=F64)
    dst = src + torch.tensor([[[1.0, -1.0], [0.0, 2.0]], [[-2.0, 1.0], [1.0, 1.0]]], dtype=F64)
    out, _ = sparse_image_warp(img, src, dst, num_boundary_points=2)
    for i in range(2):
        for j in range(2):
            r, c = dst[i, j].long().tolist()
            sr, sc = src[i, j].long().tolist()
            assert out[i, 0, r, c].item() == pytest.approx(img[i, 0, sr, sc].item(), abs=1e-9)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_interpolate_spline_gradcheck(order):
    g = torch.Generator().manual_seed(order)
    train = (torch.rand(2, 5, 2, generator=g, dtype=F64) * 3).requires_grad_()
    values = torch.randn(2, 5, 2, generator=g, dtype=F64).requires_grad_()
    query = (torch.rand(2, 4, 2, generator=g, dtype=F64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t, v, q: interpolate_spline(t, v, q, order, 0.01), (train, values, query))


@pytest.mark.parametrize("order, nb", [(1, 1), (2, 2), (4, 1)])
def test_sparse_image_warp_gradcheck(order, nb):
    g = torch.Generator().manual_seed(7 + order)
    img = torch.randn(2, 2, 5, 6, generator=g, dtype=F64).requires_grad_()
    src = torch.tensor([[[1.3, 1.7], [3.2, 3.6]], [[2.4, 2.1], [1.1, 4.2]]], dtype=F64)
    disp = (0.4 * torch.randn(2, 2, 2, generator=g, dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda im, d: sparse_image_warp(im, src, src + d, interpolation_order=order,
                                        num_boundary_points=nb),
        (img, disp), atol=1e-6)


def test_dense_image_warp_and_sampler_gradcheck():
    g = torch.Generator().manual_seed(11)
    img = torch.randn(1, 2, 4, 5, generator=g, dtype=F64).requires_grad_()
    flow = (0.3 + 0.4 * torch.rand(1, 2, 4, 5, generator=g, dtype=F64)).requires_grad_()
    for mode in ("border", "zeros"):
        assert torch.autograd.gradcheck(
            lambda im, f: dense_image_warp(im, f, padding_mode=mode), (img, flow))
    q = (torch.rand(1, 6, 2, generator=g, dtype=F64) * 3 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda im, p: bilinear_sample(im, p), (img, q))


# --------------------------------------------------------------------------- errors
def test_errors_name_the_parameter():
    pts = torch.rand(1, 4, 2, dtype=F64)
    vals = torch.rand(1, 4, 1, dtype=F64)
    for bad in (0, -1, 2.5, True, "2"):
        with pytest.raises(ConfigError, match=r"'order' parameter of solve_interpolation must be "
                                              r"an int >= 1\. Got " + repr(bad).replace(".", r"\.")
                                              + " instead"):
            interpolate_spline(pts, vals, pts, bad)
    with pytest.raises(ConfigError, match=r"'order' parameter of phi must be an int >= 1"):
        phi(pts, 0)
    with pytest.raises(ConfigError, match=r"'regularization_weight' .* must be >= 0\. Got -0.1"):
        interpolate_spline(pts, vals, pts, 2, -0.1)
    with pytest.raises(ConfigError, match=r"'train_values' .* must have shape \(1, 4\) \+ \(k,\)"):
        interpolate_spline(pts, vals[:, :3], pts, 2)
    with pytest.raises(ConfigError, match=r"'query_points' parameter of apply_interpolation"):
        interpolate_spline(pts, vals, torch.rand(1, 4, 3, dtype=F64), 2)
    with pytest.raises(ConfigError, match=r"'train_points' .* must be a \(batch, n, dims\) "
                                          r"tensor\. Got \(4, 2\) instead"):
        interpolate_spline(pts[0], vals, pts, 2)
    img = torch.rand(1, 1, 5, 5)
    with pytest.raises(ConfigError, match=r"'image' parameter of sparse_image_warp must be a "
                                          r"\(batch, channels, height, width\) tensor"):
        sparse_image_warp(img[0], pts.float(), pts.float())
    with pytest.raises(ConfigError, match=r"'dest_control_points' .* must have the shape of "
                                          r"'source_control_points'"):
        sparse_image_warp(img, pts.float(), pts[:, :3].float())
    with pytest.raises(ConfigError, match=r"'source_control_points' .* must be a \(batch=1, n, "
                                          r"2\) tensor"):
        sparse_image_warp(img, torch.rand(2, 4, 2), torch.rand(2, 4, 2))
    with pytest.raises(ConfigError, match=r"'num_boundary_points' .* must be an int >= 0\. "
                                          r"Got -1 instead"):
        sparse_image_warp(img, pts.float(), pts.float(), num_boundary_points=-1)
    with pytest.raises(ConfigError, match=r"'padding_mode' parameter of dense_image_warp must "
                                          r"be one of \['border', 'zeros'\]\. Got 'reflect'"):
        dense_image_warp(img, torch.zeros(1, 2, 5, 5), padding_mode="reflect")
    with pytest.raises(ConfigError, match=r"'flow' parameter of dense_image_warp must have "
                                          r"shape \(1, 2, 5, 5\)"):
        dense_image_warp(img, torch.zeros(1, 5, 5, 2))
    with pytest.raises(ConfigError, match=r"'image' parameter of bilinear_sample must be a "
                                          r"floating-point tensor\. Got dtype torch.int64"):
        bilinear_sample(torch.zeros(1, 1, 3, 3, dtype=torch.long), torch.zeros(1, 2, 2))
    with pytest.raises(ConfigError, match=r"'query_points' parameter of bilinear_sample must "
                                          r"be a \(batch=1, N, 2\) tensor"):
        bilinear_sample(img, torch.zeros(1, 2, 3))


def test_float32_warp_keeps_dtype_and_matches_float64_at_paper_size():
    """The spline is solved in float64 internally: float32 images lose < 1e-4 pixel."""
    g = torch.Generator().manual_seed(12)
    img = torch.randn(4, 3, 20, 20, generator=g, dtype=F64)
    rows, cols = torch.meshgrid(torch.tensor([5.0, 10, 15], dtype=F64),
                                torch.tensor([5.0, 10, 15], dtype=F64), indexing="ij")
    src = torch.stack((rows.reshape(-1), cols.reshape(-1)), -1).expand(4, -1, -1)
    dst = src + 2 * torch.randn(4, 9, 2, generator=g, dtype=F64)
    for order in (1, 2, 4):
        out64, flow64 = sparse_image_warp(img, src, dst, interpolation_order=order,
                                          num_boundary_points=1)
        out32, flow32 = sparse_image_warp(img.float(), src.float(), dst.float(),
                                          interpolation_order=order, num_boundary_points=1)
        assert out32.dtype == flow32.dtype == torch.float32
        assert (flow32.double() - flow64).abs().max() < 1e-4
        assert (out32.double() - out64).abs().max() < 1e-3
