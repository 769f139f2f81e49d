"""The spatio-temporal re-localization model of the CVPR 2019 paper (Sec. 4, Fig. 5), with
the reference-propagation cell injected (``none``, ``convlstm``, ``flow``, ``traj``, ``warp``).

Pipeline, for a query (``Q`` clips with the query box in each) and a reference (``T`` clips,
one per scored keyframe):

1. Backbone (Eq. 5-7): a 3D CNN on each 8-frame clip; time is flattened into channels, so
   a clip becomes a ``(C, H/s, W/s)`` map. ``tiny3d`` (default) is a small 3D CNN trained
   from scratch (stride 8 or 16); ``s3d``, ``r3d_18`` and ``r2plus1d_18`` are torchvision's
   video models cut at the last stride-16 layer, with Kinetics-400 weights when
   ``pretrained`` is set *and* the weights are on disk (``pretrained_path`` or torch's hub
   cache) -- nothing is ever downloaded.
2. Query features: ``roi_align`` of each query clip's map at its box (``roi_size`` square).
3. Reference propagation (Eq. 8): the cell runs over the reference maps in time order
   (:func:`relocbench_baselines.stvr.cells.run_sequence`); ``flow`` is given dense optical flow between
   the centre frames of consecutive clips (the keyframes, with ``clip_sampling: keyframe``). The
   original recipe's model shares this step (``OriginalSTVRModel.propagate``).
4. Proposals (Eq. 9): an RPN (3x3 conv, objectness and box deltas per anchor), NMS with
   ``torchvision.ops.nms``, ``roi_align`` of each proposal.
5. Matching (Eq. 10): attention over the query clips, ``e_kj = tanh(W_q avg(f^q_j) +
   W_r avg(f^p_k) + b_p)``, ``a_kj = softmax_j(w^T e_kj + b_s)``, ``f^q_k = sum_j a_kj f^q_j``;
   the proposal and the weighted query feature are concatenated along channels.
6. Second stage (Sec. 4.5): a binary "corresponds to the query" logit and class-agnostic box
   regression, Faster R-CNN style.

Losses (two-stage, Faster R-CNN): RPN objectness (binary cross-entropy on ``rpn_batch``
sampled anchors, at most half positive; positives IoU >= 0.6 with any actor's box or the
best anchor of a box, negatives < 0.3) and smooth-L1 box deltas on its positives; head
binary cross-entropy on every actor's ground-truth box (the other actors are the hard
negatives) plus proposals sampled up to ``head_batch`` RoIs (positives IoU >= 0.5 with a
*target* box, at most ``head_pos_fraction`` of the sample), and smooth-L1 deltas on positives. The RPN learns "any actor"; the head learns "the actor
that moves like the query".

Coordinates are pixels of the ``frame_size`` square input, xyxy; predictions are normalised.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, clip_boxes_to_image, nms, remove_small_boxes, roi_align

from relocbench.errors import ConfigError

from .cells import create_cell, run_sequence

__all__ = ["BACKBONES", "Tiny3D", "TorchvisionBackbone", "build_backbone", "BoxCoder", "STVRModel",
           "normalize_clips", "CELL_KWARGS"]

BACKBONES = ("tiny3d", "s3d", "r3d_18", "r2plus1d_18")
_MEAN = (0.43216, 0.394666, 0.37645)  # Kinetics statistics (torchvision video models)
_STD = (0.22803, 0.22145, 0.216989)
_BBOX_CLIP = math.log(1000.0 / 16)


def normalize_clips(clips: torch.Tensor) -> torch.Tensor:
    """``(N, 8, H, W, 3)`` uint8 -> ``(N, 3, 8, H, W)`` float, Kinetics-normalised."""
    x = clips.permute(0, 4, 1, 2, 3).float().div_(255.0)
    mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------- backbones
def _flatten_time(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, T, h, w)`` -> ``(N, C * T, h, w)`` (paper Eq. 6)."""
    n, c, t, h, w = x.shape
    return x.reshape(n, c * t, h, w)


class Tiny3D(nn.Module):
    """A small 3D CNN for 8-frame clips: temporal stride 4 (8 -> 2 steps, as I3D's Mixed_4c),
    spatial stride ``stride`` (8 or 16), ``4 * width`` channels per step, GroupNorm."""

    def __init__(self, *, width: int = 16, stride: int = 8) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ConfigError(f"The 'backbone_stride' parameter of tiny3d must be 8 or 16. Got {stride!r} instead.")
        if isinstance(width, bool) or not isinstance(width, int) or width < 4 or width % 4:
            raise ConfigError(f"The 'width' parameter of tiny3d must be a multiple of 4 >= 4. Got {width!r} instead.")

        def block(cin, cout, st):
            return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=st, padding=1, bias=False),
                                 nn.GroupNorm(4, cout), nn.ReLU(inplace=True))

        w = width
        layers = [block(3, w, (1, 2, 2)), block(w, 2 * w, (2, 2, 2)), block(2 * w, 4 * w, (2, 2, 2)),
                  block(4 * w, 4 * w, 1)]
        if stride == 16:
            layers.append(block(4 * w, 4 * w, (1, 2, 2)))
        self.layers = nn.Sequential(*layers)
        self.stride = stride
        self.out_channels = 4 * w * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _flatten_time(self.layers(x))


def _weights_file(name: str, pretrained_path: str) -> Path:
    import torchvision.models.video as tvv

    if pretrained_path:
        p = Path(pretrained_path)
        if not p.is_file():
            raise ConfigError(f"pretrained weights for {name} not found: {p} is not a file")
        return p
    enum = {"s3d": tvv.S3D_Weights, "r3d_18": tvv.R3D_18_Weights, "r2plus1d_18": tvv.R2Plus1D_18_Weights}[name]
    url = enum.KINETICS400_V1.url
    p = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not p.is_file():
        raise ConfigError(
            f"pretrained Kinetics-400 weights for {name} are not available offline: expected {p} "
            f"(relocbench never downloads; fetch {url} yourself and put it there, or set pretrained_path)")
    return p


class TorchvisionBackbone(nn.Module):
    """A torchvision video model cut after its last layer of spatial stride 16."""

    def __init__(self, name: str, *, pretrained: bool = False, pretrained_path: str = "") -> None:
        super().__init__()
        import torchvision.models.video as tvv

        ctor = {"s3d": tvv.s3d, "r3d_18": tvv.r3d_18, "r2plus1d_18": tvv.r2plus1d_18}[name]
        net = ctor(weights=None)
        if pretrained:
            state = torch.load(_weights_file(name, pretrained_path), map_location="cpu", weights_only=True)
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise ConfigError(f"the pretrained weights do not fit {name}: {str(exc).splitlines()[0]}") from None
        parts = list(net.features.children()) if name == "s3d" else [net.stem, net.layer1, net.layer2, net.layer3,
                                                                        net.layer4]
        probe = torch.zeros(1, 3, 8, 64, 64)
        keep, t_out, c_out = 0, 1, 0
        with torch.no_grad():
            x = probe
            for i, layer in enumerate(parts):
                x = layer(x)
                if 64 // x.shape[-1] == 16:
                    keep, c_out, t_out = i + 1, x.shape[1], x.shape[2]
        if keep == 0:
            raise ConfigError(f"{name} has no stride-16 layer")  # pragma: no cover
        self.layers = nn.Sequential(*parts[:keep])
        self.stride = 16
        self.out_channels = int(c_out * t_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _flatten_time(self.layers(x))


def build_backbone(name: str, *, width: int = 16, stride: int = 8, pretrained: bool = False,
                   pretrained_path: str = "") -> nn.Module:
    if name not in BACKBONES:
        raise ConfigError(f"The 'backbone' parameter must be one of {list(BACKBONES)}. Got {name!r} instead.")
    if name == "tiny3d":
        if pretrained:
            raise ConfigError("the tiny3d backbone has no pretrained weights (it trains from scratch); "
                              "use backbone s3d, r3d_18 or r2plus1d_18 with pretrained")
        return Tiny3D(width=width, stride=stride)
    return TorchvisionBackbone(name, pretrained=pretrained, pretrained_path=pretrained_path)


# --------------------------------------------------------------------------- boxes
class BoxCoder:
    """Faster R-CNN box deltas ``(dx, dy, dw, dh)`` scaled by ``weights``."""

    def __init__(self, weights: Tuple[float, float, float, float]) -> None:
        self.weights = weights

    def encode(self, ref: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        wx, wy, ww, wh = self.weights
        rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        rx, ry = ref[:, 0] + 0.5 * rw, ref[:, 1] + 0.5 * rh
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
        return torch.stack([wx * (bx - rx) / rw, wy * (by - ry) / rh, ww * torch.log(bw / rw),
                            wh * torch.log(bh / rh)], 1)

    def decode(self, ref: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        wx, wy, ww, wh = self.weights
        rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        rx, ry = ref[:, 0] + 0.5 * rw, ref[:, 1] + 0.5 * rh
        dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
        dw = (deltas[:, 2] / ww).clamp(max=_BBOX_CLIP)
        dh = (deltas[:, 3] / wh).clamp(max=_BBOX_CLIP)
        cx, cy = rx + dx * rw, ry + dy * rh
        w, h = rw * torch.exp(dw), rh * torch.exp(dh)
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)


def make_anchors(height: int, width: int, stride: int, sizes: Sequence[float], ratios: Sequence[float]
                 ) -> torch.Tensor:
    """``(height * width * A, 4)`` anchors centred on the feature cells, cell-major."""
    base = []
    for s in sizes:
        for r in ratios:  # r = height / width, area s^2
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base_t = torch.tensor(base, dtype=torch.float32)
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
    return (shifts + base_t.view(1, -1, 4)).reshape(-1, 4)


def _sample(labels: torch.Tensor, n: int, pos_fraction: float,
            generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices of at most ``n`` samples, at most ``pos_fraction`` of them positive (labels 1,
    0 negative, -1 ignored), drawn with ``generator`` (torch's global one when None)."""
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(pos.numel(), int(n * pos_fraction))
    n_neg = min(neg.numel(), n - n_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator)[:n_pos].to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator)[:n_neg].to(neg.device)]
    return pos, neg


def _image_generator(seeds: Optional[Sequence[int]], image: int, steps: int, stage: int) -> Optional[torch.Generator]:
    """The sampling stream of one reference image: from its item's seed, its index in the item
    and the stage (0 RPN, 1 head), so that it does not depend on which process (DDP rank)
    or batch position the item lands in. None without seeds (torch's global generator)."""
    if seeds is None:
        return None
    item, frame = divmod(image, steps)
    g = torch.Generator()
    g.manual_seed((int(seeds[item]) * 1_000_003 + frame * 2 + stage) % (2**63))
    return g


# --------------------------------------------------------------------------- model
CELL_KWARGS = {
    "none": (),
    "convlstm": ("kernel_size",),
    "flow": ("kernel_size",),
    "traj": ("kernel_size", "links"),
    "warp": ("kernel_size", "grid_size", "num_boundary_points", "interpolation_order"),
}


class STVRModel(nn.Module):
    """The whole two-stage model; ``forward`` computes the training losses, ``detect`` the
    scored boxes of one query/reference pair. All hyperparameters are keyword-only."""

    def __init__(self, *, cell: str = "warp", backbone: str = "tiny3d", width: int = 16, backbone_stride: int = 8,
                 pretrained: bool = False, pretrained_path: str = "", frame_size: int = 64,
                 hidden_channels: int = 32, kernel_size: int = 3, links: int = 5, grid_size: int = 3,
                 num_boundary_points: int = 2, interpolation_order: int = 2, roi_size: int = 4,
                 anchor_scales: Sequence[float] = (0.14, 0.22, 0.34), anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 attention_dim: int = 64, head_channels: int = 64, head_dim: int = 128, fusion: str = "concat",
                 rpn_batch: int = 64, head_batch: int = 32, head_pos_fraction: float = 0.25,
                 train_proposals: int = 24, test_proposals: int = 32, detections: int = 5,
                 nms_iou: float = 0.5) -> None:
        super().__init__()
        if cell not in CELL_KWARGS:
            raise ConfigError(f"The 'cell' parameter must be one of {sorted(CELL_KWARGS)}. Got {cell!r} instead.")
        if fusion not in ("concat", "concat-product"):
            raise ConfigError(f"The 'fusion' parameter must be 'concat' or 'concat-product'. Got {fusion!r} instead.")
        self.backbone = build_backbone(backbone, width=width, stride=backbone_stride, pretrained=pretrained,
                                       pretrained_path=pretrained_path)
        self.stride = self.backbone.stride
        if frame_size % self.stride:
            raise ConfigError(f"The 'frame_size' parameter must be a multiple of the backbone stride {self.stride}. "
                              f"Got {frame_size!r} instead.")
        self.frame_size = int(frame_size)
        self.map_size = self.frame_size // self.stride
        c = self.backbone.out_channels
        self.channels = c
        self.cell_name = cell
        allowed = {"kernel_size": kernel_size, "links": links, "grid_size": grid_size,
                   "num_boundary_points": num_boundary_points, "interpolation_order": interpolation_order}
        kw = {k: allowed[k] for k in CELL_KWARGS[cell]}
        if cell != "none":
            kw["hidden_channels"] = hidden_channels
        self.cell = create_cell(cell, in_channels=c, **kw)
        self.needs_flow = bool(getattr(self.cell, "needs_flow", False))
        # RPN
        sizes = [s * frame_size for s in anchor_scales]
        self.register_buffer("anchors", make_anchors(self.map_size, self.map_size, self.stride, sizes,
                                                     anchor_ratios), persistent=False)
        a = len(anchor_scales) * len(anchor_ratios)
        self.n_anchor_types = a
        self.rpn_conv = nn.Conv2d(c, c, 3, padding=1)
        self.rpn_obj = nn.Conv2d(c, a, 1)
        self.rpn_box = nn.Conv2d(c, 4 * a, 1)
        for m in (self.rpn_obj, self.rpn_box):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        self.rpn_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.head_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        # attention (Eq. 10)
        self.roi_size = int(roi_size)
        self.att_q = nn.Linear(c, attention_dim, bias=False)
        self.att_r = nn.Linear(c, attention_dim)  # its bias is b_p
        self.att_w = nn.Linear(attention_dim, 1)  # its bias is b_s (cancels in the softmax)
        # second stage
        self.fusion = fusion
        fin = 3 * c if fusion == "concat-product" else 2 * c
        self.head_conv = nn.Sequential(nn.Conv2d(fin, head_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.head_fc = nn.Sequential(nn.Linear(head_channels * self.roi_size ** 2, head_dim), nn.ReLU(inplace=True))
        self.cls = nn.Linear(head_dim, 1)
        self.box = nn.Linear(head_dim, 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.zeros_(self.cls.bias)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.box.bias)
        self.rpn_batch, self.head_batch, self.head_pos_fraction = rpn_batch, head_batch, head_pos_fraction
        self.train_proposals, self.test_proposals = train_proposals, test_proposals
        self.detections, self.nms_iou = detections, nms_iou

    # ------------------------------------------------------------------ pieces
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, 8, S, S, 3)`` uint8 clips -> ``(N, C, S/s, S/s)`` maps."""
        if clips.dim() != 5 or tuple(clips.shape[2:]) != (self.frame_size, self.frame_size, 3):
            raise ConfigError(f"clips must be (N, 8, {self.frame_size}, {self.frame_size}, 3) uint8. "
                              f"Got {tuple(clips.shape)} instead.")
        return self.backbone(normalize_clips(clips))

    def query_features(self, maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """RoI features ``(N, C, R, R)`` of one box per query map."""
        rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None], boxes], 1)
        return roi_align(maps, rois, self.roi_size, spatial_scale=1.0 / self.stride, sampling_ratio=2, aligned=True)

    def propagate(self, maps: torch.Tensor, flows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> the cell's ``(B, T, C, h, w)`` outputs (Eq. 8)."""
        if self.needs_flow and flows is None:
            raise ConfigError("the flow cell needs dense optical flows between consecutive reference clips")
        return run_sequence(self.cell, maps, flows if self.needs_flow else None)

    def rpn(self, maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Objectness ``(N, h*w*A)`` and deltas ``(N, h*w*A, 4)`` (cell-major like the anchors)."""
        x = F.relu(self.rpn_conv(maps))
        n = maps.shape[0]
        obj = self.rpn_obj(x).permute(0, 2, 3, 1).reshape(n, -1)
        box = self.rpn_box(x).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return obj, box

    def proposals(self, obj: torch.Tensor, deltas: torch.Tensor, keep: int) -> List[torch.Tensor]:
        out = []
        size = (self.frame_size, self.frame_size)
        for i in range(obj.shape[0]):
            boxes = clip_boxes_to_image(self.rpn_coder.decode(self.anchors, deltas[i].detach()), size)
            scores = obj[i].detach()
            ok = remove_small_boxes(boxes, 1.0)
            boxes, scores = boxes[ok], scores[ok]
            top = scores.topk(min(len(scores), 4 * keep)).indices
            boxes, scores = boxes[top], scores[top]
            kept = nms(boxes, scores, 0.7)[:keep]
            out.append(boxes[kept])
        return out

    def head(self, maps: torch.Tensor, rois: List[torch.Tensor], qfeat: torch.Tensor, qmask: torch.Tensor,
             item_of_image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(K,)`` and deltas ``(K, 4)`` of the RoIs (a list per image of ``maps``).

        ``qfeat`` ``(B, Q, C, R, R)`` query features with ``qmask`` ``(B, Q)`` (valid clips);
        ``item_of_image[i]`` is the pair of image ``i``.
        """
        fp = roi_align(maps, rois, self.roi_size, spatial_scale=1.0 / self.stride, sampling_ratio=2, aligned=True)
        img = torch.cat([torch.full((len(r),), i, dtype=torch.long, device=maps.device) for i, r in enumerate(rois)])
        item = item_of_image[img]
        e = torch.tanh(self.att_q(qfeat.mean((-2, -1)))[item] + self.att_r(fp.mean((-2, -1)))[:, None, :])
        logit = self.att_w(e).squeeze(-1).masked_fill(~qmask[item], float("-inf"))
        alpha = torch.softmax(logit, -1)
        fq = torch.einsum("kq,kqcxy->kcxy", alpha, qfeat[item])
        parts = [fp, fq] + ([fp * fq] if self.fusion == "concat-product" else [])
        h = self.head_fc(self.head_conv(torch.cat(parts, 1)).flatten(1))
        return self.cls(h).squeeze(-1), self.box(h)

    def _query(self, qclips: torch.Tensor, qboxes: torch.Tensor) -> torch.Tensor:
        b, q = qclips.shape[:2]
        maps = self.encode(qclips.reshape(b * q, *qclips.shape[2:]))
        return self.query_features(maps, qboxes.reshape(b * q, 4).float()).reshape(b, q, self.channels,
                                                                                   self.roi_size, self.roi_size)

    # ------------------------------------------------------------------ training
    def forward(self, ref_clips: torch.Tensor, ref_valid: torch.Tensor, query_clips: torch.Tensor,
                query_boxes: torch.Tensor, query_valid: torch.Tensor, gt_all: List[torch.Tensor],
                gt_match: List[torch.Tensor], flows: Optional[torch.Tensor] = None,
                seeds: Optional[Sequence[int]] = None, reduction: str = "mean") -> Dict[str, torch.Tensor]:
        """Training losses of a batch: ``ref_clips`` ``(B, T, 8, S, S, 3)`` uint8 with
        ``ref_valid`` ``(B, T)`` (False: zero padding), ``query_clips`` ``(B, Q, 8, S, S, 3)``,
        ``query_boxes`` ``(B, Q, 4)`` pixels, ``query_valid`` ``(B, Q)``, and per reference
        image (``B * T``, row-major) every actor's boxes ``gt_all`` and the target boxes
        ``gt_match`` (pixels).

        ``seeds`` (one per item) make the anchor and RoI sampling of each item its own stream.
        ``reduction="mean"``: the four losses, RPN terms averaged over the valid images and
        head terms over the RoIs. ``reduction="sum"``: their numerators, with the counts
        ``n_images`` and ``n_rois``, for a caller that divides by counts over the whole
        distributed batch (then DDP's average of the ranks' gradients is the one-process
        gradient)."""
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' or 'sum'. Got {reduction!r} instead.")
        b, t = ref_clips.shape[:2]
        maps = self.encode(ref_clips.reshape(b * t, *ref_clips.shape[2:]))
        maps = maps * ref_valid.reshape(b * t, 1, 1, 1).to(maps.dtype)
        maps = self.propagate(maps.reshape(b, t, *maps.shape[1:]), flows).reshape(b * t, *maps.shape[1:])
        qfeat = self._query(query_clips, query_boxes)
        valid = ref_valid.reshape(-1)
        obj, deltas = self.rpn(maps)
        # RPN losses
        cls_terms, box_terms = [], []
        for i in torch.nonzero(valid).flatten().tolist():
            labels = torch.zeros(len(self.anchors), device=maps.device)
            gts = gt_all[i]
            if len(gts):
                iou = box_iou(self.anchors, gts)
                best, arg = iou.max(1)
                labels[(best >= 0.3) & (best < 0.6)] = -1
                labels[best >= 0.6] = 1
                labels[iou.argmax(0)] = 1
            pos, neg = _sample(labels, self.rpn_batch, 0.5, _image_generator(seeds, i, t, 0))
            idx = torch.cat([pos, neg])
            cls_terms.append(F.binary_cross_entropy_with_logits(obj[i, idx], labels[idx], reduction="sum")
                             / max(1, len(idx)))
            if len(pos):
                tgt = self.rpn_coder.encode(self.anchors[pos], gts[arg[pos]])
                box_terms.append(F.smooth_l1_loss(deltas[i, pos], tgt, beta=1.0 / 9, reduction="sum")
                                 / max(1, len(idx)))
        zero = obj.sum() * 0.0
        n_images = len(cls_terms)
        rpn_cls = torch.stack(cls_terms).sum() if cls_terms else zero
        rpn_box = torch.stack(box_terms).sum() if box_terms else zero
        # second stage: proposals + every actor's box, sampled
        props = self.proposals(obj, deltas, self.train_proposals)
        rois, labels_all, targets_all = [], [], []
        for i in range(b * t):
            # every actor's box always (the distractors are the hard negatives), plus sampled proposals
            gts = gt_all[i] if bool(valid[i]) else gt_all[i][:0]
            cand = props[i] if bool(valid[i]) else props[i][:0]
            n_fill = max(0, self.head_batch - len(gts))
            parts_b, parts_l, parts_t = [gts], [], []
            for boxes, fill in ((gts, None), (cand, n_fill)):
                lab = torch.zeros(len(boxes), device=maps.device)
                tgt = torch.zeros(len(boxes), 4, device=maps.device)
                if len(boxes) and len(gt_match[i]):
                    iou = box_iou(boxes, gt_match[i])
                    best, arg = iou.max(1)
                    lab = (best >= 0.5).float()
                    tgt = gt_match[i][arg]
                if fill is None:
                    parts_l.append(lab)
                    parts_t.append(tgt)
                    continue
                pos, neg = _sample(lab, fill, self.head_pos_fraction, _image_generator(seeds, i, t, 1))
                idx = torch.cat([pos, neg])
                parts_b.append(boxes[idx])
                parts_l.append(lab[idx])
                parts_t.append(tgt[idx])
            rois.append(torch.cat(parts_b))
            labels_all.append(torch.cat(parts_l))
            targets_all.append(torch.cat(parts_t))
        n_rois = sum(len(r) for r in rois)
        cls = box = zero
        if n_rois:
            item_of_image = torch.arange(b, device=maps.device).repeat_interleave(t)
            logits, bdeltas = self.head(maps, rois, qfeat, query_valid, item_of_image)
            labels = torch.cat(labels_all)
            cls = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
            pos = labels > 0
            if pos.any():
                r = torch.cat(rois)[pos]
                box = F.smooth_l1_loss(bdeltas[pos], self.head_coder.encode(r, torch.cat(targets_all)[pos]),
                                       beta=1.0, reduction="sum")
        if reduction == "sum":
            return {"rpn_cls": rpn_cls, "rpn_box": rpn_box, "cls": cls, "box": box,
                    "n_images": n_images, "n_rois": n_rois}
        ni, nr = max(1, n_images), max(1, n_rois)
        return {"rpn_cls": rpn_cls / ni, "rpn_box": rpn_box / ni, "cls": cls / nr, "box": box / nr}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, ref_clips: torch.Tensor, query_clips: torch.Tensor, query_boxes: torch.Tensor,
               flows: Optional[torch.Tensor] = None, *, return_maps: bool = False):
        """Scored boxes of one pair: ``ref_clips`` ``(T, 8, S, S, 3)``, ``query_clips``
        ``(Q, 8, S, S, 3)`` with ``query_boxes`` ``(Q, 4)`` pixels, ``flows`` ``(T, 2, h, w)``.
        Returns per keyframe ``(boxes (k, 4) pixels, scores (k,) probabilities)``, best first,
        at most ``detections`` after NMS at ``nms_iou``."""
        t = ref_clips.shape[0]
        maps = self.encode(ref_clips)
        maps = self.propagate(maps.unsqueeze(0), None if flows is None else flows.unsqueeze(0))[0]
        qfeat = self._query(query_clips.unsqueeze(0), query_boxes.unsqueeze(0))
        qmask = torch.ones(1, query_clips.shape[0], dtype=torch.bool, device=maps.device)
        obj, deltas = self.rpn(maps)
        props = self.proposals(obj, deltas, self.test_proposals)
        out = []
        if sum(len(p) for p in props):
            logits, bd = self.head(maps, props, qfeat, qmask, torch.zeros(t, dtype=torch.long, device=maps.device))
            scores_all = torch.sigmoid(logits)
            boxes_all = clip_boxes_to_image(self.head_coder.decode(torch.cat(props), bd),
                                            (self.frame_size, self.frame_size))
        start = 0
        for p in props:
            if not len(p):
                out.append((p, p[:, 0]))
                continue
            s, bx = scores_all[start:start + len(p)], boxes_all[start:start + len(p)]
            start += len(p)
            ok = ((bx[:, 2] - bx[:, 0]) > 0.5) & ((bx[:, 3] - bx[:, 1]) > 0.5)
            s, bx = s[ok], bx[ok]
            keep = nms(bx, s, self.nms_iou)[: self.detections]
            out.append((bx[keep], s[keep]))
        return (out, maps) if return_maps else out
