"""torchvision backbones: weights resolution, clip sampling from the weights' metadata, image models."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
import torchvision.models as M

from relocbench.errors import ConfigError
from relocbench.extract import ExtractConfig, extract_video, extract_videos, make_backbone
from relocbench.extract.decode import VideoReader
from relocbench.extract.synth import write_moving_shapes
from relocbench.features import open_feature_store


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path, monkeypatch):
    """No cached weights anywhere: TORCH_HOME points to an empty folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_moving_shapes(tmp_path_factory.mktemp("v") / "clip.mp4", n_frames=32, fps=25, size=(64, 48), seed=7)


def _frames_rgb(path) -> np.ndarray:
    with VideoReader(path) as r:
        return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in r.frames()])


def _random_state(name, tmp_path, seed=3):
    torch.manual_seed(seed)
    model = M.get_model(name, weights=None)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_weights_auto_without_cached_file_says_where_to_put_it(tmp_path):
    want = tmp_path / "torch-home" / "hub" / "checkpoints" / "r2plus1d_18-91a641e6.pth"
    with pytest.raises(ConfigError) as err:
        make_backbone(ExtractConfig(backbone="r2plus1d_18", weights="auto", device="cpu"))
    msg = str(err.value)
    assert "\n" not in msg
    assert f"put r2plus1d_18-91a641e6.pth (from https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth) " \
           f"at {want}" in msg
    with pytest.raises(ConfigError, match="no cached weights for resnet50 .* put resnet50-11ad3fa6.pth"):
        make_backbone(ExtractConfig(backbone="resnet50", weights="auto", device="cpu"))


def test_state_dict_file_matches_a_plain_torchvision_forward(clip, tmp_path):
    """r3d_18 loaded from a state dict: rows equal the penultimate layer of torchvision's own model
    on clips prepared by the weights' own transforms (16 frames, 128x171 resize, 112 crop)."""
    model, path = _random_state("r3d_18", tmp_path)
    cfg = ExtractConfig(backbone="r3d_18", weights=str(path), device="cpu", batch_size=2)
    vf = extract_video(clip, cfg)
    assert vf.features.shape == (2, 512)
    assert vf.attrs["weights"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert vf.attrs["clip_len"] == 16 and vf.attrs["crop_size"] == [112, 112]
    # the oracle: torchvision's transforms and model, fc removed
    tf = M.get_model_weights("r3d_18").DEFAULT.transforms()
    model.fc = torch.nn.Identity()
    model.eval()
    frames = torch.from_numpy(_frames_rgb(clip)).permute(0, 3, 1, 2)  # [T, 3, H, W]
    with torch.no_grad():
        want = torch.stack([model(tf(frames[16 * j:16 * j + 16])[None])[0] for j in range(2)]).numpy()
    np.testing.assert_allclose(vf.features, want, rtol=1e-4, atol=1e-4)
    # the same file in torchvision's cache is what --weights auto uses
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "r3d_18-b3b3357e.pth").write_bytes(path.read_bytes())
    auto = extract_video(clip, ExtractConfig(backbone="r3d_18", weights="auto", device="cpu"))
    np.testing.assert_array_equal(auto.features, vf.features)
    assert auto.attrs["weights"] == vf.attrs["weights"] and "cached file" in auto.attrs["weights_note"]


def test_clips_longer_than_a_step_are_centred_and_clamped(clip, tmp_path):
    """step 8 < clip_len 16: clip j holds frames 8j - 4 .. 8j + 11, clamped to 0 .. 31."""
    model, path = _random_state("r3d_18", tmp_path)
    cfg = ExtractConfig(backbone="r3d_18", weights=str(path), step_frames=8, device="cpu", batch_size=3,
                        options={"crop_size": 32, "resize_size": [36, 48]})
    vf = extract_video(clip, cfg)
    assert vf.features.shape == (4, 512) and vf.attrs["crop_size"] == [32, 32]
    from torchvision.transforms._presets import VideoClassification

    w = M.get_model_weights("r3d_18").DEFAULT.transforms()
    tf = VideoClassification(crop_size=[32, 32], resize_size=[36, 48], mean=w.mean, std=w.std)
    frames = torch.from_numpy(_frames_rgb(clip)).permute(0, 3, 1, 2)
    x = tf(frames).permute(1, 0, 2, 3)  # [T, 3, 32, 32]
    model.fc = torch.nn.Identity()
    model.eval()
    rows = []
    with torch.no_grad():
        for j in range(4):
            idx = np.clip(np.arange(8 * j - 4, 8 * j + 12), 0, 31)
            rows.append(model(x[idx].permute(1, 0, 2, 3)[None])[0].numpy())
    np.testing.assert_allclose(vf.features, np.stack(rows), rtol=1e-4, atol=1e-4)


def test_random_weights_are_marked_and_seeded(clip, tmp_path):
    cfg = ExtractConfig(backbone="r3d_18", weights="none", device="cpu", options={"crop_size": 32, "resize_size": 36})
    out = tmp_path / "r.h5"
    extract_videos([clip], cfg, out=out)
    store = open_feature_store(out)
    assert store.attrs["weights"] == "none" and "random" in store.attrs["weights_note"]
    assert store.attrs["backbone"] == "r3d_18" and store.dim == 512
    np.testing.assert_array_equal(store.get("clip"), extract_video(clip, cfg).features)


def test_wrong_state_dict_is_one_line_error(tmp_path):
    _, path = _random_state("resnet18", tmp_path)
    with pytest.raises(ConfigError, match=r"the weights do not fit r3d_18: Error\(s\) in loading state_dict"):
        make_backbone(ExtractConfig(backbone="r3d_18", weights=str(path), device="cpu"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"junk\.pth: not a readable state dict for r3d_18"):
        make_backbone(ExtractConfig(backbone="r3d_18", weights=str(tmp_path / "junk.pth"), device="cpu"))
    with pytest.raises(ConfigError, match=r"nope\.pth: weights file not found"):
        make_backbone(ExtractConfig(backbone="r3d_18", weights=str(tmp_path / "nope.pth"), device="cpu"))


def test_image_model_averages_frames_per_step(clip, tmp_path):
    model, path = _random_state("resnet18", tmp_path)
    cfg = ExtractConfig(backbone="resnet18", weights=str(path), step_frames=10, device="cpu", batch_size=7,
                        options={"crop_size": 32, "resize_size": 40})
    vf = extract_video(clip, cfg)
    assert vf.features.shape == (4, 512)   # ceil(32 / 10)
    from torchvision.transforms._presets import ImageClassification

    w = M.get_model_weights("resnet18").DEFAULT.transforms()
    x = ImageClassification(crop_size=32, resize_size=40, mean=w.mean, std=w.std)(
        torch.from_numpy(_frames_rgb(clip)).permute(0, 3, 1, 2))
    model.fc = torch.nn.Identity()
    model.eval()
    with torch.no_grad():
        per_frame = model(x).numpy()
    want = np.stack([per_frame[10 * j:10 * j + 10].mean(0) for j in range(4)])
    np.testing.assert_allclose(vf.features, want, rtol=1e-4, atol=1e-4)


def test_unknown_option_and_missing_cuda():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['flow'\] for backbone 'r3d_18'"):
        make_backbone(ExtractConfig(backbone="r3d_18", weights="none", device="cpu", options={"flow": "dis"}))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            make_backbone(ExtractConfig(backbone="r3d_18", weights="none", device="cuda"))
