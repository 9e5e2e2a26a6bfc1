"""The DepthG-style semantic model: a frozen self-supervised backbone, a STEGO head, a cluster probe.

The paper's semantic cue (``docs/method.md`` §2.1-2.2) is DepthG [Sick et al., CVPR 2024]: STEGO's
feature-correlation distillation of a frozen DINO backbone into a low-dimensional *code*, plus a
depth-feature correlation term, then 27 clusters, inferred with CUPS' depth-guided sliding window.
This module holds every piece of it; the training loop is
:mod:`vcups_core.pseudo.depthg_train` (``vcups semantic-train --backbone-weights FILE``).

**Backbone** (:func:`load_backbone`, frozen, always in eval mode, from a local file only: nothing
is ever downloaded):

* ``vit``: a timm Vision Transformer (default ``vit_base_patch8_224`` = DINO ViT-B/8, the paper's;
  any timm ViT name is accepted), built with ``dynamic_img_size=True`` so any input whose sides
  are multiples of the patch size works. Features = the last block's patch tokens after the final
  norm (``forward_features`` without the class/register tokens), as STEGO's ``DinoFeaturizer``
  (``feat`` of the last block), ``float[B, C, H/p, W/p]``.
* ``resnet``: a torchvision ResNet (default ``resnet50``; DINO's ResNet-50 is in torchvision's
  layout). Features = the output of ``layer4`` (the representation DINO trains), with ``layer4``
  dilated instead of strided for the bottleneck ResNets (50/101/152; DeepLab's trick: same
  weights, output stride 16 instead of 32, so a 320 px window gives 20x20 codes, not 10x10);
  ResNet-18/34 (basic blocks cannot be dilated in torchvision) keep stride 32.

Checkpoint key layouts (:func:`read_state_dict`): a bare state dict or one under ``teacher``
(preferred), ``student``, ``state_dict`` or ``model``; the prefixes ``module.``, ``backbone.``,
``teacher.``/``student.`` (flat DINO checkpoints) are stripped, and heads (``head.*``; ``fc.*`` for
ResNets) are dropped. Every missing or unexpected key and every shape mismatch is named in one
:class:`ValueError`: a wrong file never gives random features. Kind and architecture are inferred
from the keys when not given (:func:`infer_backbone`): ``--backbone-weights FILE`` of any DINO
ViT-S/B (patch 8/16) or ResNet-18/34/50/101 checkpoint is all a user passes.

**Head** (:class:`DepthGHead`): STEGO's projection, ``linear(drop(f)) + nonlinear(drop(f))`` with
``linear`` a 1x1 conv and ``nonlinear`` 1x1 conv, ReLU, 1x1 conv, ``Dropout2d(0.1)`` on the input
of each branch (training only). Code dimension :data:`DEFAULT_CODE_DIM` = 100: DepthG's Cityscapes
ViT-B recipe (``paper_reproduction.sh``: ``dim=100``); STEGO's ``train_config.yml`` default is 70.

**Losses** (:func:`depthg_losses`): STEGO's correspondence loss
``L = -clamp(S, 0) * (F - b)`` on an ``n x n`` grid of random points per image, with ``F`` the
cosine correlation of the frozen features and ``S`` that of the codes, over self pairs (an image
with itself), kNN pairs (an image with one of its nearest neighbours in the training set) and
random pairs (an image with another image of the batch, :func:`super_perm`), plus DepthG's
depth-feature correlation term (:func:`depth_feature_loss`). Weights and shifts
(:class:`LossWeights`) are DepthG's published Cityscapes ViT-B values.

**Probe** (:func:`fit_centroids`, :meth:`DepthGModel.probe`): K = ``semantics.num_classes`` (27)
centroids from a seeded spherical k-means on L2-normalised codes of the training frames (not
STEGO's jointly trained cluster probe: a k-means after training is deterministic and needs no
learning rate); inference is ``log_softmax(alpha * cos(code, centroids))``, alpha =
``semantics.cluster_temperature`` (2).

**Inference** (:meth:`DepthGModel.log_proba`): :func:`vcups_core.cues.depth_guided.depth_guided_logits`
with the model as encoder plus probe (CUPS' order: codes are averaged and upsampled before the
probe), ``semantics.crop_size``/``stride`` windows (320/160), the global pass at half size with
flip averaging, ``w = 1 / (1 + D)`` with the frame's depth scaled to a metric median
(``depth_scale="median"``, :mod:`~vcups_core.cues.depth_guided`); without depth every pixel gets
the documented fallback (the configured metric median, 15 m: ``w = 1/16``, mostly sliding window).

**File** (:meth:`DepthGModel.save` / :meth:`DepthGModel.load`): one ``torch.save`` dict read with
``weights_only=True``: format tag, head state dict, centroids, the backbone's kind, arch, path and
SHA-256 (the backbone itself is not copied; it is re-read from its path, or from a file of the
same name next to the model, and its hash checked), code dim and image normalisation.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn

from vcups_core.cues.depth_guided import DEFAULT_METRIC_MEDIAN_M, depth_guided_logits
from vcups_core.jobs import file_sha256
from vcups_core.model.weights import format_keys, state_dict_problems

FloatArray = npt.NDArray[np.float32]
BackboneKind = Literal["vit", "resnet"]

FORMAT = "vcups-depthg"
"""Format tag of the model file."""
FORMAT_VERSION = 1

DEFAULT_VIT_ARCH = "vit_base_patch8_224"
"""DINO ViT-B/8, the paper's backbone (method §2.1)."""
DEFAULT_RESNET_ARCH = "resnet50"
DEFAULT_CODE_DIM = 100
"""DepthG's Cityscapes ViT-B code dimension (STEGO's default: 70)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_BOTTLENECK = ("resnet50", "resnet101", "resnet152")
_VIT_SIZES = {(192, 12): "tiny", (384, 12): "small", (768, 12): "base", (1024, 24): "large"}
_RESNET_BY_BLOCKS = {
    (False, 2): "resnet18",
    (False, 6): "resnet34",
    (True, 6): "resnet50",
    (True, 23): "resnet101",
    (True, 36): "resnet152",
}


# ----------------------------------------------------------------------------------------------
# backbone


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Flat DINO layouts → bare backbone names (module docstring)."""
    for role in ("teacher.", "student."):  # a flat teacher/student checkpoint: the teacher
        if any(k.startswith(role) for k in state):
            state = {k.removeprefix(role): v for k, v in state.items() if k.startswith(role)}
            break
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "backbone."):
                if new.startswith(prefix):
                    new, changed = new.removeprefix(prefix), True
        out[new] = value
    return out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The backbone parameters of a checkpoint file, names mapped to the bare backbone's.

    Accepts the layouts of the module docstring; heads (``head.*``, and ``fc.*`` of ResNets) are
    dropped by :func:`load_backbone`, not here.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not readable with ``torch.load(weights_only=True)``, or no tensor dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path}: no such file")
    try:
        # full DINO training checkpoints carry their argparse options
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"backbone weights {path}: cannot be read with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    for _ in range(3):  # e.g. {"teacher": {...}} or {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        inner = next(
            (
                obj[k]
                for k in ("teacher", "state_dict", "model", "student")
                if isinstance(obj.get(k), Mapping)
            ),
            None,
        )
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"backbone weights {path}: expected a state dict (name -> tensor, possibly under "
            f"'teacher', 'state_dict' or 'model'), got {type(obj).__name__}"
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"backbone weights {path}: no tensors in the state dict")
    return _strip_prefixes(state)


def infer_backbone(state: Mapping[str, Tensor], *, source: str = "state dict") -> tuple[str, str]:
    """``(kind, arch)`` of a (prefix-stripped) backbone state dict.

    ViT: embedding width, depth and patch size → ``vit_{tiny,small,base,large}_patch{p}_224``;
    ResNet: bottleneck blocks and the number of ``layer3`` blocks → ``resnet18`` ... ``resnet152``.

    Raises:
        ValueError: the keys are neither a ViT's nor a ResNet's, or the size has no timm name
            (pass the arch explicitly then).
    """
    keys = list(state)
    if "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in keys):
        weight = state["patch_embed.proj.weight"]
        width, patch = int(weight.shape[0]), int(weight.shape[-1])
        depth = len({k.split(".")[1] for k in keys if k.startswith("blocks.")})
        size = _VIT_SIZES.get((width, depth))
        if size is None:
            raise ValueError(
                f"{source}: a ViT of width {width}, depth {depth}, patch {patch} has no default "
                "timm name; pass the architecture (--backbone-arch, e.g. vit_base_patch8_224)"
            )
        return "vit", f"vit_{size}_patch{patch}_224"
    if "layer1.0.conv1.weight" in state:
        bottleneck = "layer1.0.conv3.weight" in state
        blocks = len({k.split(".")[1] for k in keys if k.startswith("layer3.")})
        arch = _RESNET_BY_BLOCKS.get((bottleneck, blocks))
        if arch is None:
            raise ValueError(
                f"{source}: a ResNet with {blocks} layer3 blocks is not a torchvision ResNet; "
                "pass the architecture (--backbone-arch)"
            )
        return "resnet", arch
    raise ValueError(
        f"{source}: neither a ViT (blocks.*, patch_embed.*) nor a ResNet (layer1.*) state dict "
        f"(keys: {format_keys(keys)})"
    )


class _ResNetTrunk(nn.Module):
    """A torchvision ResNet up to ``layer4`` (its ``fc`` removed)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        import torchvision

        dilate = arch in _BOTTLENECK
        net = getattr(torchvision.models, arch)(
            weights=None, replace_stride_with_dilation=[False, False, dilate]
        )
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.stride = 16 if dilate else 32
        self.channels = 2048 if dilate else 512

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: Tensor = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return out


class FrozenBackbone(nn.Module):
    """A frozen feature extractor: ImageNet-normalised ``float[B, 3, H, W]`` (H, W multiples of
    :attr:`stride`) → ``float[B, C, H / stride, W / stride]`` (module docstring).

    Build with :func:`build_backbone` (random weights) or :func:`load_backbone`. Its parameters
    never require gradients and it stays in eval mode whatever ``train()`` is called with.
    """

    def __init__(self, kind: BackboneKind, arch: str, net: nn.Module) -> None:
        super().__init__()
        self.kind: BackboneKind = kind
        self.arch = arch
        self.net = net
        if kind == "vit":
            vit: Any = net
            patch = vit.patch_embed.patch_size
            self.stride = int(patch[0] if isinstance(patch, tuple | list) else patch)
            self.channels = int(vit.num_features)
            self.prefix_tokens = int(vit.num_prefix_tokens)
        else:
            assert isinstance(net, _ResNetTrunk)
            self.stride, self.channels, self.prefix_tokens = net.stride, net.channels, 0
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(False)  # BatchNorm statistics and ViT dropout stay frozen
        return self

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"backbone input {h}x{w} is not a multiple of the stride {self.stride} "
                "(pad it: pad_to_stride)"
            )
        if self.kind == "resnet":
            resnet: Any = self.net
            feats: Tensor = resnet(x)
            return feats
        vit: Any = self.net
        tokens: Tensor = vit.forward_features(x)[:, self.prefix_tokens :]
        return tokens.reshape(b, h // self.stride, w // self.stride, -1).permute(0, 3, 1, 2)


def build_backbone(kind: BackboneKind, arch: str) -> FrozenBackbone:
    """A randomly initialised :class:`FrozenBackbone` (``pretrained=False``: no download).

    Raises:
        ValueError: an unknown kind, a name timm or torchvision does not know, or a timm model
            that is not a ViT.
    """
    if kind == "vit":
        import timm

        try:
            net = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True)
        except Exception as exc:  # timm: RuntimeError("Unknown model ...") or a TypeError
            raise ValueError(f"backbone arch {arch!r}: not a timm ViT ({exc})") from None
        if not (hasattr(net, "patch_embed") and hasattr(net, "blocks")):
            raise ValueError(f"backbone arch {arch!r}: a timm model but not a ViT")
        return FrozenBackbone("vit", arch, net)
    if kind == "resnet":
        if arch not in _RESNETS:
            raise ValueError(f"backbone arch {arch!r}: expected one of {', '.join(_RESNETS)}")
        return FrozenBackbone("resnet", arch, _ResNetTrunk(arch))
    raise ValueError(f"backbone kind must be 'vit' or 'resnet', got {kind!r}")


def map_backbone_state_dict(
    state: Mapping[str, Tensor], backbone: FrozenBackbone, *, source: str = "state dict"
) -> dict[str, Tensor]:
    """Check ``state`` against ``backbone`` and return a complete state dict for its ``net``.

    Heads are dropped (``head.*``; ``fc.*`` for ResNets). A ViT's absolute position embedding of
    another grid size is resampled (timm ``resample_abs_pos_embed``); ``num_batches_tracked``
    counters missing from old checkpoints are taken from the model.

    Raises:
        ValueError: naming ``source`` and every missing key, unexpected key and shape mismatch.
    """
    drop = ("head.", "fc.") if backbone.kind == "resnet" else ("head.",)
    given = {k: v for k, v in state.items() if not k.startswith(drop)}
    expected = backbone.net.state_dict()
    pos = given.get("pos_embed")
    if backbone.kind == "vit" and pos is not None and pos.shape != expected["pos_embed"].shape:
        from timm.layers.pos_embed import resample_abs_pos_embed

        prefix = backbone.prefix_tokens
        old = round(math.sqrt(pos.shape[1] - prefix))
        new = round(math.sqrt(expected["pos_embed"].shape[1] - prefix))
        if old * old == pos.shape[1] - prefix and pos.shape[2] == expected["pos_embed"].shape[2]:
            given["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=[new, new], old_size=[old, old], num_prefix_tokens=prefix
            )
    problems = state_dict_problems(expected, given)
    if problems:
        raise ValueError(
            f"{source}: not a {backbone.arch} ({backbone.kind}) state dict ({problems})"
        )
    return {k: given.get(k, v) for k, v in expected.items()}


def load_backbone(
    path: str | Path, kind: BackboneKind | None = None, arch: str | None = None
) -> FrozenBackbone:
    """The frozen backbone of a local checkpoint (kind and arch inferred when None).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or keys/shapes that do not fit (every one named).
    """
    path = Path(path)
    state = read_state_dict(path)
    source = f"backbone weights {path}"
    if kind is None or arch is None:  # both given: the key check below says what is wrong
        found_kind, found_arch = infer_backbone(state, source=source)
        if kind is not None and kind != found_kind:
            raise ValueError(f"{source}: a {found_kind} checkpoint, not a {kind}")
        kind = "vit" if found_kind == "vit" else "resnet"
        arch = arch or found_arch
    backbone = build_backbone(kind, arch)
    backbone.net.load_state_dict(
        map_backbone_state_dict(state, backbone, source=source), strict=True
    )
    return backbone


def pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Zero-pad ``[B, C, H, W]`` at the bottom and right to multiples of ``stride`` (zero is the
    mean colour of an ImageNet-normalised image)."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


# ----------------------------------------------------------------------------------------------
# head


class DepthGHead(nn.Module):
    """STEGO's segmentation head: ``linear(drop(f)) + nonlinear(drop(f))`` (module docstring).

    Args:
        in_channels: backbone feature channels C.
        code_dim: code channels D.
        dropout: ``Dropout2d`` probability on the features (training only; STEGO: 0.1).

    ``forward``: ``float[B, C, h, w]`` → code ``float[B, D, h, w]``.
    """

    def __init__(self, in_channels: int, code_dim: int = DEFAULT_CODE_DIM, dropout: float = 0.1):
        super().__init__()
        if in_channels < 1 or code_dim < 1:
            raise ValueError(f"need in_channels, code_dim >= 1, got {in_channels}, {code_dim}")
        self.in_channels, self.code_dim = int(in_channels), int(code_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear = nn.Conv2d(in_channels, code_dim, 1)
        self.nonlinear = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1), nn.ReLU(), nn.Conv2d(in_channels, code_dim, 1)
        )

    def forward(self, feats: Tensor) -> Tensor:
        code: Tensor = self.linear(self.dropout(feats)) + self.nonlinear(self.dropout(feats))
        return code


# ----------------------------------------------------------------------------------------------
# losses


@dataclass(frozen=True)
class LossWeights:
    """Weights ``w`` and shifts ``b`` of the loss terms (:func:`depthg_losses`).

    Defaults: DepthG's Cityscapes ViT-B run (``leonsick/depthg`` ``paper_reproduction.sh``:
    ``pos_intra 0.95/0.39, pos_inter 1.02/0.25, neg_inter 0.57/0.26, depth_feat 0.09/0.03``,
    ``depth_loss_decay_factor 0.8`` every 400 steps applied to weight and shift,
    ``pointwise=False``) and ``train_config.yml`` (11x11 points, 5 negative permutations,
    ``zero_clamp``). Not guesses; their transfer to other video and backbones is.
    """

    pos_intra_weight: float = 0.95
    pos_intra_shift: float = 0.39
    pos_inter_weight: float = 1.02
    pos_inter_shift: float = 0.25
    neg_inter_weight: float = 0.57
    neg_inter_shift: float = 0.26
    depth_weight: float = 0.09
    depth_shift: float = 0.03
    depth_decay: float = 0.8
    depth_decay_every: int = 400
    feature_samples: int = 11
    neg_samples: int = 5
    pointwise: bool = False

    def depth_at(self, step: int) -> tuple[float, float]:
        """``(weight, shift)`` of the depth term at ``step`` (0-based): both decayed by
        ``depth_decay`` every ``depth_decay_every`` steps, as DepthG."""
        factor = self.depth_decay ** (step // max(self.depth_decay_every, 1))
        return self.depth_weight * factor, self.depth_shift * factor


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Cosine correlation ``[N, h, w, i, j]`` of ``a [N, C, h, w]`` and ``b [N, C, i, j]``."""
    a = F.normalize(a, dim=1, eps=1e-10)
    b = F.normalize(b, dim=1, eps=1e-10)
    return torch.einsum("nchw,ncij->nhwij", a, b)


def correspondence_loss(
    f1: Tensor, f2: Tensor, c1: Tensor, c2: Tensor, shift: float, *, pointwise: bool = False
) -> Tensor:
    """STEGO's per-pair loss ``-clamp(S, 0) * (F - shift)``, ``float[N, h, w, i, j]``.

    ``F`` = :func:`correlation` of the frozen features ``f1, f2`` (no gradient; with
    ``pointwise`` each row is centred, STEGO's option), ``S`` that of the codes ``c1, c2``.
    Pairs whose codes already anti-correlate (``S < 0``) give 0 and no gradient (zero clamp).
    """
    with torch.no_grad():
        fd = correlation(f1, f2)
        if pointwise:
            old_mean = fd.mean()
            fd = fd - fd.mean([3, 4], keepdim=True)
            fd = fd - fd.mean() + old_mean
    cd = correlation(c1, c2)
    return -cd.clamp(min=0) * (fd - shift)


def depth_similarity(d1: Tensor, d2: Tensor) -> Tensor:
    """``1 - |d1_hw - d2_ij|``, ``float[N, h, w, i, j]`` of depth maps ``[N, 1, h, w]`` in
    ``[0, 1]`` (NaN = unknown, giving NaN pairs)."""
    return 1.0 - (d1[:, 0, :, :, None, None] - d2[:, 0, None, None, :, :]).abs()


def depth_feature_loss(code: Tensor, depth: Tensor, shift: float) -> Tensor:
    """DepthG's depth-feature correlation term: ``mean(-clamp(S, 0) * (D - shift))`` over the
    pairs of sampled points of each image whose depths are both known.

    GUESS (method.md is silent; DepthG's code normalises its one-channel depth map along the
    channel axis, which makes its ``D`` 1 for every pair of positive depths): ``D`` =
    :func:`depth_similarity` of the inverse depth min-max normalised per crop to ``[0, 1]``
    (:func:`normalised_inverse_depth`), so points at similar depth are pulled together in code
    space, points far apart in depth not (``D`` near 0, below the shift: pushed apart).

    Args:
        code: sampled codes ``float[N, D, n, n]``.
        depth: the same points' normalised inverse depth ``float[N, 1, n, n]``, NaN unknown.
        shift: ``b``.

    Returns:
        A scalar (0 when no pair has known depth).
    """
    dd = depth_similarity(depth, depth)
    known = torch.isfinite(dd)
    if not bool(known.any()):
        return code.sum() * 0.0
    loss = -correlation(code, code).clamp(min=0) * (torch.nan_to_num(dd) - shift)
    return (loss * known).sum() / known.sum()


def normalised_inverse_depth(depth: npt.NDArray[Any]) -> FloatArray:
    """Inverse depth of one crop min-max normalised to ``[0, 1]`` over its known pixels (finite,
    ``> 0``); NaN elsewhere, and everywhere when fewer than 2 distinct values are known."""
    d = np.asarray(depth, np.float32)
    out = np.full(d.shape, np.nan, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        known = np.isfinite(d) & (d > 0)
        if not known.any():
            return out
        rho = 1.0 / d[known]
    lo, hi = float(rho.min()), float(rho.max())
    if hi - lo <= 1e-12 * max(hi, 1e-12):
        return out
    out[known] = (rho - lo) / (hi - lo)
    return out


def sample_points(t: Tensor, coords: Tensor) -> Tensor:
    """``t [N, C, H, W]`` at ``coords [N, n, n, 2]`` (x, y in ``[-1, 1]``) → ``[N, C, n, n]``
    (bilinear, border padding, as STEGO)."""
    return F.grid_sample(t, coords.permute(0, 2, 1, 3), padding_mode="border", align_corners=True)


def super_perm(size: int, generator: torch.Generator) -> Tensor:
    """STEGO's random permutation of ``range(size)`` that moves every element (when
    ``size > 1``): the partner of each image for the random (negative) pairs."""
    perm = torch.randperm(size, generator=generator)
    perm[perm == torch.arange(size)] += 1
    return perm % size


def depthg_losses(
    feats: Tensor,
    feats_pos: Tensor,
    code: Tensor,
    code_pos: Tensor,
    depth: Tensor | None,
    weights: LossWeights,
    generator: torch.Generator,
    *,
    step: int = 0,
) -> dict[str, Tensor]:
    """The DepthG training loss of one batch (module docstring).

    Args:
        feats, feats_pos: frozen features ``float[N, C, h, w]`` of the images and of their kNN
            partners.
        code, code_pos: their codes ``float[N, D, h, w]`` (with gradients).
        depth: normalised inverse depth ``float[N, 1, H, W]`` of the images (any resolution,
            NaN unknown; :func:`normalised_inverse_depth`), or None for no depth term.
        weights: weights and shifts.
        generator: a CPU generator for the sampled points and the negative permutations.
        step: the training step (the depth term's decay).

    Returns:
        ``{"total", "pos_intra", "pos_inter", "neg_inter", "depth"}`` scalars; ``total`` is the
        weighted sum (the one to minimise).
    """
    n, s = feats.shape[0], weights.feature_samples
    device = code.device

    def coords() -> Tensor:
        return (torch.rand([n, s, s, 2], generator=generator) * 2 - 1).to(device)

    coords1, coords2 = coords(), coords()
    f, c = sample_points(feats, coords1), sample_points(code, coords1)
    fp, cp = sample_points(feats_pos, coords2), sample_points(code_pos, coords2)
    pw = weights.pointwise
    pos_intra = correspondence_loss(f, f, c, c, weights.pos_intra_shift, pointwise=pw).mean()
    pos_inter = correspondence_loss(f, fp, c, cp, weights.pos_inter_shift, pointwise=pw).mean()
    negatives = []
    for _ in range(weights.neg_samples):
        perm = super_perm(n, generator).to(device)
        fn, cn = sample_points(feats[perm], coords2), sample_points(code[perm], coords2)
        negatives.append(correspondence_loss(f, fn, c, cn, weights.neg_inter_shift, pointwise=pw))
    neg_inter = torch.cat(negatives).mean() if negatives else code.sum() * 0.0
    depth_weight, depth_shift = weights.depth_at(step)
    if depth is None:
        depth_term = code.sum() * 0.0
    else:
        depth_term = depth_feature_loss(c, sample_points(depth, coords1), depth_shift)
    total = (
        weights.pos_intra_weight * pos_intra
        + weights.pos_inter_weight * pos_inter
        + weights.neg_inter_weight * neg_inter
        + depth_weight * depth_term
    )
    return {
        "total": total,
        "pos_intra": pos_intra,
        "pos_inter": pos_inter,
        "neg_inter": neg_inter,
        "depth": depth_term,
    }


# ----------------------------------------------------------------------------------------------
# probe


def fit_centroids(
    codes: FloatArray, num_classes: int, *, seed: int = 0, iterations: int = 50, n_init: int = 2
) -> FloatArray:
    """K unit centroids from a seeded spherical k-means on codes ``float32[N, D]`` (the rows are
    L2-normalised first; :func:`vcups_core.cues.semantics.kmeans`, ``metric="cosine"``)."""
    from vcups_core.cues.semantics import kmeans

    centroids, _ = kmeans(
        np.asarray(codes, np.float32),
        num_classes,
        metric="cosine",
        iterations=iterations,
        n_init=n_init,
        seed=seed,
    )
    norm = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.asarray(centroids / np.maximum(norm, 1e-12), np.float32)


def cluster_log_proba(code: Tensor, centroids: Tensor, alpha: float) -> Tensor:
    """The cluster probe ``log_softmax(alpha * cos(code, centroids))``: ``code [D, H, W]``,
    ``centroids [K, D]`` → ``[K, H, W]``."""
    unit = F.normalize(code, dim=0, eps=1e-10)
    logits = torch.einsum("dhw,kd->khw", unit, F.normalize(centroids, dim=1, eps=1e-10))
    return torch.log_softmax(alpha * logits, dim=0)


# ----------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class BackboneRecord:
    """Which backbone a model file was trained on (stored in the file)."""

    kind: BackboneKind
    arch: str
    path: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "arch": self.arch, "path": self.path, "sha256": self.sha256}


class DepthGModel:
    """Backbone + head + probe, for inference (:meth:`log_proba`) and as the model file.

    Args:
        backbone: the frozen backbone.
        head: the trained head (its ``in_channels`` = the backbone's channels).
        centroids: ``float32[K, D]`` probe centroids.
        record: the backbone's file (kind, arch, path, SHA-256).
        temperature: alpha of the probe.
        crop, stride: sliding-window crop and stride of the depth-guided inference.
        target_median: metric median (m) relative depth is scaled to (``depth_guided``).
        device: torch device of the backbone and head.
        info: free-form training facts stored in the file (steps, losses, frames).
    """

    def __init__(
        self,
        backbone: FrozenBackbone,
        head: DepthGHead,
        centroids: npt.NDArray[np.floating[Any]],
        record: BackboneRecord,
        *,
        temperature: float = 2.0,
        crop: int = 320,
        stride: int = 160,
        target_median: float = DEFAULT_METRIC_MEDIAN_M,
        device: str = "cpu",
        info: dict[str, Any] | None = None,
    ) -> None:
        c = np.asarray(centroids, np.float32)
        if c.ndim != 2 or c.shape[1] != head.code_dim or c.shape[0] < 2:
            raise ValueError(f"centroids must be float32[K >= 2, {head.code_dim}], got {c.shape}")
        if head.in_channels != backbone.channels:
            raise ValueError(
                f"head expects {head.in_channels} feature channels, the backbone gives "
                f"{backbone.channels}"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.backbone, self.head, self.record = backbone, head, record
        self.centroids = np.ascontiguousarray(c)
        self.temperature = float(temperature)
        self.crop, self.stride = int(crop), int(stride)
        self.target_median = float(target_median)
        self.info = dict(info or {})
        self.mean = np.asarray(IMAGENET_MEAN, np.float32)
        self.std = np.asarray(IMAGENET_STD, np.float32)
        self.device = torch.device(device)
        self.backbone.to(self.device)
        self.head.to(self.device).eval()
        self._centroids_t = torch.from_numpy(self.centroids)

    @property
    def num_classes(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def code_dim(self) -> int:
        return self.head.code_dim

    def normalise(self, image: npt.NDArray[np.uint8]) -> FloatArray:
        """``uint8[H, W, 3]`` RGB → ImageNet-normalised ``float32[3, H, W]``."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be uint8[H, W, 3], got {img.dtype}{list(img.shape)}")
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(np.moveaxis(x, -1, 0), np.float32)

    def encode(self, x: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Code of a normalised image ``float32[3, h, w]``: ``float32[D, h', w']``.

        At the feature grid (``h / stride``) when ``h, w`` are multiples of the backbone's
        stride; otherwise the input is zero-padded and the code upsampled to the padded size and
        cropped to ``h x w`` (so it stays aligned with the image).
        """
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(self.device)
        h, w = t.shape[-2:]
        padded = pad_to_stride(t, self.backbone.stride)
        with torch.inference_mode():
            code = self.head(self.backbone(padded))
            if padded.shape[-2:] != t.shape[-2:]:
                code = F.interpolate(
                    code, size=padded.shape[-2:], mode="bilinear", align_corners=False
                )[..., :h, :w]
        out: FloatArray = np.ascontiguousarray(code[0].float().cpu().numpy())
        return out

    def probe(self, code: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Cluster-probe log-probabilities ``float32[K, H, W]`` of a code ``float32[D, H, W]``."""
        with torch.inference_mode():
            logp = cluster_log_proba(
                torch.from_numpy(np.ascontiguousarray(code, np.float32)),
                self._centroids_t,
                self.temperature,
            )
        out: FloatArray = logp.numpy()
        return out

    def log_proba(
        self,
        image: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.floating[Any]] | None = None,
        *,
        focal_px: float | None = None,
    ) -> FloatArray:
        """Depth-guided log-probabilities of one frame (module docstring, method §2.2 step 1).

        Args:
            image: ``uint8[H, W, 3]`` RGB.
            depth: ``float32[H, W]`` depth of any scale (NaN/<= 0 unknown), or None.
            focal_px: unused (the signature of the semantic stage's models).

        Returns:
            ``float32[K, H, W]``, log_softmax over the K classes.
        """
        x = self.normalise(image)
        h, w = x.shape[1:]
        if depth is None:
            d = np.full((h, w), np.nan, np.float32)
        else:
            d = np.array(depth, np.float32)
            if d.shape != (h, w):
                raise ValueError(f"depth must be float32[{h}, {w}], got {list(d.shape)}")
            d[~(d > 0)] = np.nan  # also NaN; +inf (sky) stays
        fused = depth_guided_logits(
            x,
            d,
            self.encode,
            probe=self.probe,
            crop=self.crop,
            stride=self.stride,
            depth_scale="median",
            target_median=self.target_median,
        )
        with torch.inference_mode():
            out: FloatArray = torch.log_softmax(torch.from_numpy(fused), dim=0).numpy()
        return out

    # ------------------------------------------------------------------------------------------
    # persistence

    def to_dict(self) -> dict[str, Any]:
        """The file's content (:meth:`save`)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "in_channels": self.head.in_channels,
            "code_dim": self.head.code_dim,
            "centroids": torch.from_numpy(self.centroids.copy()),
            "backbone": self.record.to_dict(),
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "inference": {
                "temperature": self.temperature,
                "crop": self.crop,
                "stride": self.stride,
                "target_median": self.target_median,
            },
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        """Write the model file atomically (:func:`vcups_core.jobs.atomic_write_stream`)."""
        from vcups_core.jobs import atomic_write_stream

        content = self.to_dict()
        atomic_write_stream(Path(path), lambda fh: torch.save(content, fh))

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        backbone_weights: str | Path | None = None,
        **kwargs: Any,
    ) -> DepthGModel:
        """Read a model file written by :meth:`save` and its backbone.

        The backbone is read from ``backbone_weights`` if given, else from the recorded path, else
        from a file of the same name next to the model file; its SHA-256 must match the record.

        Args:
            path: the model file.
            device: torch device.
            backbone_weights: the backbone file, overriding the recorded path.
            **kwargs: ``temperature``, ``crop``, ``stride``, ``target_median`` (see the class;
                default: the values stored in the file).

        Raises:
            FileNotFoundError: no model file, or the backbone is nowhere to be found.
            ValueError: not a DepthG model file, or a backbone with another hash.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        content = read_model_file(path)
        rec = content["backbone"]
        record = BackboneRecord(rec["kind"], rec["arch"], rec["path"], rec["sha256"])
        candidates = (
            [Path(backbone_weights)]
            if backbone_weights is not None
            else [Path(record.path), path.parent / Path(record.path).name]
        )
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path}: its backbone {record.path} is missing (also not next to the model file); "
                "copy it there"
            )
        digest = file_sha256(found)
        if digest != record.sha256:
            raise ValueError(
                f"{path}: the backbone {found} is not the one it was trained on (SHA-256 "
                f"{digest[:12]}..., expected {record.sha256[:12]}...)"
            )
        backbone = load_backbone(found, record.kind, record.arch)
        head = DepthGHead(int(content["in_channels"]), int(content["code_dim"]))
        try:
            head.load_state_dict(content["head"], strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: head does not fit its backbone ({exc})") from None
        stored = content.get("inference", {})
        settings = {
            k: stored[k] for k in ("temperature", "crop", "stride", "target_median") if k in stored
        }
        return cls(
            backbone,
            head,
            content["centroids"].numpy(),
            record,
            device=device,
            info=content.get("info"),
            **(settings | kwargs),
        )


def read_model_file(path: Path) -> dict[str, Any]:
    """The checked content of a DepthG model file (no backbone loaded).

    Raises:
        ValueError: not a ``torch.save`` dict with the :data:`FORMAT` tag and version.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path}: not a DepthG model file from `vcups semantic-train --backbone-weights` "
            f"(torch.load: {type(exc).__name__})"
        ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a DepthG model file from `vcups semantic-train --backbone-weights` "
            "(no format tag)"
        )
    if content.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported DepthG model file version {content.get('version')}")
    required = ("head", "in_channels", "code_dim", "centroids", "backbone")
    missing = [k for k in required if k not in content]
    if missing:
        raise ValueError(f"{path}: DepthG model file lacks {', '.join(missing)}")
    return content


def is_model_file(path: Path) -> bool:
    """True if ``path`` looks like a ``torch.save`` file (a zip archive with a ``data.pkl``), the
    container of a DepthG model file; False for a clusters ``.npz`` or anything else."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(re.fullmatch(r"(.*/)?data\.pkl", n) for n in archive.namelist())
