"""Optical flow backends (OpenCV DIS, RAFT/SMURF from a local file) and the project's one warp.

Flow follows :mod:`vcups_core.cues.base`: ``float32[H, W, 2]``, ``flow[y, x] = (dx, dy)`` in
pixels, the pixel centred at ``(x + 0.5, y + 0.5)`` moves to ``(x + 0.5 + dx, y + 0.5 + dy)``.
In the integer-centre coordinates used below (pixel ``(x, y)`` is the point ``(x, y)``) this is
simply ``(x + dx, y + dy)``; the image covers ``[-0.5, W - 0.5] × [-0.5, H - 0.5]``.

* :class:`DISFlow`: OpenCV's Dense Inverse Search on grayscale frames; no weights, CPU.
* :class:`RAFTFlow`: torchvision's RAFT (large or small) with a state dict read from a local
  file only (never downloaded). The paper's SMURF flow is a RAFT network trained without labels;
  its PyTorch ports store either torchvision's parameter names (CUPS' ``raft_smurf.pt``) or the
  original princeton-vl/RAFT names, which :func:`map_raft_state_dict` translates.
* :func:`warp`: backward warping, shared by the validity check, the tracker and the temporal
  smoothing.

Original RAFT (princeton-vl/RAFT ``core/extractor.py``, ``update.py``, ``raft.py``) → torchvision
(``torchvision/models/optical_flow/raft.py``) parameter names, as mapped here:

Encoders (``{enc}`` = ``fnet`` → ``feature_encoder``, ``cnet`` → ``context_encoder``):

* ``{enc}.conv1.`` / ``{enc}.norm1.`` → ``{enc}.convnormrelu.0.`` / ``{enc}.convnormrelu.1.``
* ``{enc}.conv2.`` (the 1×1 output conv) → ``{enc}.conv.``
* ``{enc}.layerI.J.convK.`` / ``{enc}.layerI.J.normK.`` → ``{enc}.layerI.J.convnormreluK.0.`` /
  ``{enc}.layerI.J.convnormreluK.1.``
* ``{enc}.layerI.J.downsample.0.`` / ``.1.`` → unchanged.
* ``{enc}.layerI.J.norm3.`` (residual block) / ``.norm4.`` (bottleneck block): the same module as
  ``downsample.1``, registered twice by the original code → dropped (used only if
  ``downsample.1`` is absent).

Update block:

* ``update_block.encoder.convc1.`` / ``convc2.`` → ``update_block.motion_encoder.convcorr1.0.`` /
  ``convcorr2.0.``
* ``update_block.encoder.convf1.`` / ``convf2.`` → ``update_block.motion_encoder.convflow1.0.`` /
  ``convflow2.0.``
* ``update_block.encoder.conv.`` → ``update_block.motion_encoder.conv.0.``
* ``update_block.gru.conv{z,r,q}1.`` / ``conv{z,r,q}2.`` (large, SepConvGRU) →
  ``update_block.recurrent_block.convgru1.conv{z,r,q}.`` / ``convgru2.conv{z,r,q}.``
* ``update_block.gru.conv{z,r,q}.`` (small, ConvGRU) →
  ``update_block.recurrent_block.convgru1.conv{z,r,q}.``
* ``update_block.flow_head.conv1.`` / ``conv2.`` → unchanged.
* ``update_block.mask.0.`` / ``update_block.mask.2.`` → ``mask_predictor.convrelu.0.`` /
  ``mask_predictor.conv.`` (large only).

``K`` is 1-2 in the large model's residual blocks and 1-3 in the small model's bottleneck blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn

from vcups_core.cues.base import FloatMap
from vcups_core.model.weights import format_keys, state_dict_problems
from vcups_core.types import VideoFrame

_DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _check_pair(source: VideoFrame, target: VideoFrame) -> None:
    if source.image.shape != target.image.shape:
        raise ValueError(
            f"flow needs two frames of the same size, got source {source.height}x{source.width} "
            f"(index {source.index}) and target {target.height}x{target.width} "
            f"(index {target.index})"
        )


class DISFlow:
    """OpenCV DIS optical flow (Kroeger et al., ECCV 2016) on grayscale frames.

    Args:
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV's presets; slower is more
            accurate).

    Raises:
        ValueError: for an unknown preset.
    """

    def __init__(self, preset: str = "medium") -> None:
        if preset not in _DIS_PRESETS:
            raise ValueError(
                f"unknown DIS preset {preset!r}: expected one of {sorted(_DIS_PRESETS)}"
            )
        self.preset = preset
        self.name = f"dis:{preset}"
        self._dis: cv2.DISOpticalFlow | None = None  # created lazily: cv2 objects do not pickle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_dis"] = None
        return state

    def __call__(self, source: VideoFrame, target: VideoFrame) -> FloatMap:
        """Flow from ``source`` to ``target``.

        Args:
            source, target: frames of the same size (``image`` ``uint8[H, W, 3]`` RGB).

        Returns:
            ``float32[H, W, 2]`` flow on ``source``'s grid (pixels, ``(dx, dy)``).

        Raises:
            ValueError: if the frames differ in size.
        """
        _check_pair(source, target)
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow.create(_DIS_PRESETS[self.preset])
        gray0 = cv2.cvtColor(source.image, cv2.COLOR_RGB2GRAY)
        gray1 = cv2.cvtColor(target.image, cv2.COLOR_RGB2GRAY)
        # No output buffer: with OpenCV 5.0 a zero-filled buffer changes the result (up to 13 px
        # on DAVIS car-shadow 0->1) and the flow fits the next frame worse than with None.
        flow = self._dis.calc(gray0, gray1, None)  # type: ignore[call-overload]
        return np.ascontiguousarray(flow, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# RAFT / SMURF

_MIN_RAFT_SIZE = 128
"""torchvision's RAFT needs 16 feature cells per side after the /8 encoder (4 pyramid levels)."""

_ORIGINAL_PREFIXES = ("fnet.", "cnet.", "update_block.encoder.", "update_block.gru.")
_TORCHVISION_PREFIXES = ("feature_encoder.", "context_encoder.", "update_block.motion_encoder.")

_UPDATE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
        (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
        (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
        (
            r"^update_block\.gru\.conv([zrq])(\d)\.",
            r"update_block.recurrent_block.convgru\2.conv\1.",
        ),
        (r"^update_block\.gru\.conv([zrq])\.", r"update_block.recurrent_block.convgru1.conv\1."),
        (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
        (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
    )
)
_ENCODER_KEY = re.compile(r"^(fnet|cnet)\.(.*)$")
_BLOCK_KEY = re.compile(r"^(layer\d+\.\d+)\.(conv|norm)(\d)\.(.*)$")
_TOP_KEY = re.compile(r"^(conv|norm)(\d)\.(.*)$")


def _is_original_raft(keys: list[str]) -> bool:
    return any(k.startswith(_ORIGINAL_PREFIXES) for k in keys) and not any(
        k.startswith(_TORCHVISION_PREFIXES) for k in keys
    )


def _rename_original_raft(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Original RAFT names → torchvision names (table in the module docstring).

    Returns the renamed state and, for error messages, each new name's original name. Keys that
    match no rule keep their name (only the encoder prefix is translated), so they surface as
    unexpected keys.
    """
    bottleneck = {
        m.group(1) + "." + b.group(1)
        for k in state
        if (m := _ENCODER_KEY.match(k)) and (b := _BLOCK_KEY.match(m.group(2)))
        if b.group(2) == "conv" and b.group(3) == "3"
    }
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    aliases: dict[str, tuple[str, Tensor]] = {}
    for key, value in state.items():
        new = key
        if m := _ENCODER_KEY.match(key):
            enc = "feature_encoder" if m.group(1) == "fnet" else "context_encoder"
            rest = m.group(2)
            if b := _BLOCK_KEY.match(rest):
                block, kind, k, tail = b.groups()
                alias_norm = "4" if f"{m.group(1)}.{block}" in bottleneck else "3"
                if kind == "norm" and k == alias_norm:
                    # the downsample's norm, registered twice in the original code
                    aliases[f"{enc}.{block}.downsample.1.{tail}"] = (key, value)
                    continue
                new = f"{enc}.{block}.convnormrelu{k}.{'0' if kind == 'conv' else '1'}.{tail}"
            elif (t := _TOP_KEY.match(rest)) and (t.group(1), t.group(2)) in {
                ("conv", "1"),
                ("norm", "1"),
                ("conv", "2"),
            }:
                kind, k, tail = t.groups()
                if kind == "conv" and k == "2":
                    new = f"{enc}.conv.{tail}"
                else:
                    new = f"{enc}.convnormrelu.{'0' if kind == 'conv' else '1'}.{tail}"
            else:
                new = f"{enc}.{rest}"
        else:
            for pattern, replacement in _UPDATE_RULES:
                if pattern.match(key):
                    new = pattern.sub(replacement, key, count=1)
                    break
        out[new] = value
        origin[new] = key
    for new, (key, value) in aliases.items():
        if new not in out:
            out[new] = value
            origin[new] = key
    return out, origin


def _rename(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    if _is_original_raft(list(state)):
        return _rename_original_raft(state)
    return dict(state), {}


def map_raft_state_dict(
    state: Mapping[str, Tensor], model: nn.Module, *, source: str = "state dict"
) -> dict[str, Tensor]:
    """Translate a RAFT/SMURF state dict to ``model``'s (torchvision) parameter names and check it.

    Accepts torchvision names (returned as they are) or the original princeton-vl/RAFT names
    (mapped with the table in the module docstring). A BatchNorm ``num_batches_tracked`` counter
    absent from old checkpoints is taken from ``model`` (it only affects training).

    Args:
        state: parameter name → tensor (``"module."`` prefixes already stripped).
        model: the torchvision RAFT the result is for (:func:`torchvision.models.optical_flow.
            raft_large`/``raft_small`` layout).
        source: what ``state`` came from (a file name), quoted in errors.

    Returns:
        A complete state dict for ``model`` (keys in ``model.state_dict()`` order), ready for
        ``model.load_state_dict(..., strict=True)``.

    Raises:
        ValueError: naming ``source`` and every missing key, unexpected key, or shape mismatch.
    """
    renamed, origin = _rename(state)
    expected = model.state_dict()
    problems = state_dict_problems(expected, renamed, origin=origin)
    if problems:
        raise ValueError(
            f"{source}: not a RAFT state dict for the {type(model).__name__} built from it "
            f"({problems})"
        )
    return {k: renamed.get(k, v) for k, v in expected.items()}


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    """The parameter dict of a loaded checkpoint: bare, or under ``"state_dict"``/``"model"``."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if not isinstance(obj, Mapping):
            break
        inner = next(
            (obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None
        )
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{path}: expected a RAFT state dict (name -> tensor, possibly under 'state_dict' "
            f"or 'model'), got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: state dict entries that are not tensors: {format_keys(bad)}")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    # CUPS wraps torchvision's RAFT in a module whose attribute is ``raft``
    if all(k.startswith("raft.") for k in state):
        state = {k.removeprefix("raft."): v for k, v in state.items()}
    return state


def build_raft_for(state: Mapping[str, Tensor]) -> nn.Module:
    """The torchvision RAFT whose layout matches ``state`` (either naming scheme).

    * ``raft_small`` when the feature encoder has bottleneck blocks (a third conv per block),
      else ``raft_large``.
    * The large model's context encoder uses BatchNorm when the state has its running
      statistics (original RAFT, torchvision weights), else InstanceNorm (the layout of CUPS'
      SMURF port, ``cups/optical_flow/raft.py``).
    """
    from torchvision.models.optical_flow import raft_large, raft_small
    from torchvision.models.optical_flow.raft import FeatureEncoder, ResidualBlock

    renamed, _ = _rename(state)
    model: nn.Module
    if any(k.startswith("feature_encoder.") and ".convnormrelu3." in k for k in renamed):
        model = raft_small()
    elif "context_encoder.convnormrelu.1.running_mean" in renamed:
        model = raft_large()
    else:
        context = FeatureEncoder(
            block=ResidualBlock, layers=(64, 64, 96, 128, 256), norm_layer=nn.InstanceNorm2d
        )
        model = raft_large(context_encoder=context)
    return model


def _load_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"RAFT weights {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"RAFT weights {path}: cannot be read with torch.load ({exc})") from exc
    return _unwrap_state_dict(obj, path)


class RAFTFlow:
    """RAFT optical flow (torchvision) with weights from a local state-dict file.

    Args:
        weights: ``.pth``/``.pt`` state dict of a RAFT or SMURF network (torchvision or original
            RAFT names; bare or under ``"state_dict"``/``"model"``; ``"module."`` prefixes are
            stripped). Loaded with ``weights_only=True``; never downloaded.
        iterations: recurrent refinement steps (``num_flow_updates``).
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises:
        FileNotFoundError: if ``weights`` does not exist.
        ValueError: if it is not a readable RAFT state dict (missing or unexpected keys are
            listed by name), or ``iterations < 1``.
    """

    def __init__(self, weights: str | Path, iterations: int = 12, device: str = "cpu") -> None:
        if iterations < 1:
            raise ValueError(f"RAFT iterations must be >= 1, got {iterations}")
        path = Path(weights)
        state = _load_state(path)
        model = build_raft_for(state)
        model.load_state_dict(map_raft_state_dict(state, model, source=str(path)), strict=True)
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.iterations = iterations
        self.path = path
        self.name = f"raft:{path.name}"

    def _to_tensor(self, image: npt.NDArray[np.uint8]) -> Tensor:
        rgb = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        return rgb.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [1, 3, H, W] in [-1, 1]

    def __call__(self, source: VideoFrame, target: VideoFrame) -> FloatMap:
        """Flow from ``source`` to ``target``.

        The frames are scaled to ``[-1, 1]`` and padded (edge-replicated, centred) to a multiple
        of 8 and to at least 128 pixels per side (torchvision's minimum); the flow is cropped
        back to the frame.

        Args:
            source, target: frames of the same size (``image`` ``uint8[H, W, 3]`` RGB).

        Returns:
            ``float32[H, W, 2]`` flow on ``source``'s grid (pixels, ``(dx, dy)``).

        Raises:
            ValueError: if the frames differ in size.
        """
        _check_pair(source, target)
        h, w = source.height, source.width
        ph = max(math.ceil(h / 8) * 8, _MIN_RAFT_SIZE) - h
        pw = max(math.ceil(w / 8) * 8, _MIN_RAFT_SIZE) - w
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
        with torch.inference_mode():
            image1 = F.pad(self._to_tensor(source.image), pad, mode="replicate")
            image2 = F.pad(self._to_tensor(target.image), pad, mode="replicate")
            flow = self.model(image1, image2, num_flow_updates=self.iterations)[-1]
            flow = flow[0, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
            out = flow.permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# warping


def _remap_linear(
    src: npt.NDArray[Any], map_x: npt.NDArray[np.float32], map_y: npt.NDArray[np.float32]
) -> npt.NDArray[Any]:
    """Bilinear :func:`cv2.remap` of ``[H, W]`` or ``[H, W, C]`` (any C), border replicated.

    OpenCV interpolates float images of 1, 3 and 4 channels exactly but samples any other
    channel count on a 1/32-pixel grid (errors up to 0.02 on values in [0, 1] were measured for
    2, 5 and 27 channels), so those are remapped in groups of 4, 3 or 1 channels.
    """
    if src.ndim == 2:
        return np.asarray(
            cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        )
    chunks = []
    c, total = 0, src.shape[2]
    while c < total:
        step = 4 if total - c >= 4 else (3 if total - c == 3 else 1)
        part = np.ascontiguousarray(src[..., c : c + step])
        out = cv2.remap(part, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        chunks.append(out.reshape(*map_x.shape, step))  # cv2 drops a channel axis of 1
        c += step
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)


def warp(
    values: npt.NDArray[Any],
    flow: npt.NDArray[np.floating[Any]],
    *,
    nearest: bool = False,
    fill: float = math.nan,
) -> npt.NDArray[Any]:
    """Backward warping: ``out[y, x] = values[y + flow[y, x, 1], x + flow[y, x, 0]]``.

    Used to bring the partner frame's data (its flow, labels, probabilities) onto this frame's
    grid with this frame's flow to the partner.

    * Bilinear (default): :func:`cv2.remap` with ``INTER_LINEAR``, exact for float values (channels
      are remapped in groups OpenCV interpolates exactly). A sample is NaN if a NaN value of ``values`` has a non-zero weight
      in it.
    * ``nearest=True`` (label maps): the value of the pixel nearest to the sample point, gathered
      exactly with numpy (``cv2.remap`` does not take bool and truncates 64-bit labels).

    A sample point outside the image (beyond ``[-0.5, W - 0.5] × [-0.5, H - 0.5]``, the outer
    pixel edges) or with a NaN flow gets ``fill``; inside the outer half pixel, border values
    are replicated.

    Args:
        values: ``[H, W]`` or ``[H, W, C]`` array on the partner frame's grid: float data, or
            integer/bool labels (use ``nearest=True``).
        flow: ``float32[H, W, 2]`` flow from this frame to the partner (``(dx, dy)``, pixels).
        nearest: nearest-neighbour sampling (keeps labels intact) instead of bilinear.
        fill: value of samples outside the image. For integer or bool outputs, NaN means 0.

    Returns:
        ``[H, W]`` or ``[H, W, C]``: with ``nearest``, ``values``' dtype; bilinear gives
        ``float64`` for float64 input and ``float32`` otherwise (integers are converted).

    Raises:
        ValueError: if the shapes do not match.
    """
    values = np.asarray(values)
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got {list(flow.shape)}")
    if values.ndim not in (2, 3) or values.shape[:2] != flow.shape[:2]:
        raise ValueError(
            f"values must be [H, W] or [H, W, C] with H, W = {list(flow.shape[:2])}, "
            f"got {list(values.shape)}"
        )
    if nearest:
        return NearestWarp(flow)(values, fill=fill)
    map_x, map_y, outside = _sample_points(flow)
    out: npt.NDArray[Any]
    src = values if values.dtype in (np.float32, np.float64) else values.astype(np.float32)
    nan = np.isnan(src)
    if nan.any():
        # NaN only where a NaN value has a non-zero bilinear weight (cv2 would also spread it to
        # samples that merely touch it with weight 0)
        out = _remap_linear(np.where(nan, 0, src).astype(src.dtype), map_x, map_y)
        out[_remap_linear(nan.astype(np.float32), map_x, map_y) > 0] = np.nan
    else:
        out = _remap_linear(src, map_x, map_y)
    # ``out`` is a fresh contiguous array; few points are outside, so scatter by index
    out.reshape(outside.size, -1)[np.flatnonzero(outside)] = fill
    return out


def _sample_points(
    flow: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The sample points ``(map_x, map_y)`` of :func:`warp` and the mask of those outside.

    ``map_x = x + flow[..., 0]`` (float32), clipped to ``[0, W - 1]``, and likewise ``map_y``;
    points outside ``[-0.5, W - 0.5] × [-0.5, H - 0.5]`` or with a NaN flow are ``outside``
    and moved to ``(0, 0)`` (a safe point: their samples are replaced by the fill).
    """
    return _sample_points_of(flow[..., 0], flow[..., 1])


def _outside_image(
    map_x: npt.NDArray[np.float32], map_y: npt.NDArray[np.float32], width: int, height: int
) -> npt.NDArray[np.bool_]:
    """Sample points beyond the pixel centres' range ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``
    (any shape; NaN compares False, so a NaN point counts as outside)."""
    inside = np.greater_equal(map_x, -0.5)
    scratch = np.empty_like(inside)
    inside &= np.less_equal(map_x, width - 0.5, out=scratch)
    inside &= np.greater_equal(map_y, -0.5, out=scratch)
    inside &= np.less_equal(map_y, height - 0.5, out=scratch)
    return np.logical_not(inside, out=inside)


def _sample_points_of(
    flow_x: npt.NDArray[np.floating[Any]],
    flow_y: npt.NDArray[np.floating[Any]],
    *,
    x0: int = 0,
    y0: int = 0,
    width: int | None = None,
    height: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """:func:`_sample_points` of a flow given as its two ``[h, w]`` components (contiguous ones
    are faster): the pixels ``[y0 : y0 + h, x0 : x0 + w]`` of a ``height x width`` image (by
    default the whole image, ``h x w``)."""
    rows, cols = flow_x.shape
    w = cols if width is None else width
    h = rows if height is None else height
    map_x = np.add(np.arange(x0, x0 + cols, dtype=np.float32)[None, :], flow_x, dtype=np.float32)
    map_y = np.add(np.arange(y0, y0 + rows, dtype=np.float32)[:, None], flow_y, dtype=np.float32)
    outside = _outside_image(map_x, map_y, w, h)
    np.clip(map_x, 0, w - 1, out=map_x)
    np.clip(map_y, 0, h - 1, out=map_y)
    np.copyto(map_x, 0, where=outside)
    np.copyto(map_y, 0, where=outside)
    return map_x, map_y, outside


def _nearest_index(
    map_x: npt.NDArray[np.float32], map_y: npt.NDArray[np.float32]
) -> npt.NDArray[np.intp]:
    """The flat index ``y * W + x`` (``intp[H * W]``) of the pixel nearest to each sample point
    (points inside ``[0, W - 1] × [0, H - 1]``)."""
    w = map_x.shape[1]
    # floor(p + 0.5) of a point in [0, n - 1] is a pixel index in [0, n - 1]; p + 0.5 > 0, so
    # the cast's truncation is that floor
    ix = np.add(map_x, 0.5, dtype=np.float32).astype(np.intp)
    iy = np.add(map_y, 0.5, dtype=np.float32).astype(np.intp)
    iy *= w
    iy += ix
    return iy.ravel()


def _take_nearest(values: npt.NDArray[Any], index: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """``values`` (``[H, W]`` or ``[H, W, C]``) at the flat pixel indices ``index`` of
    :func:`_nearest_index`, gathered exactly (any dtype); a fresh array of ``values``' shape."""
    h, w = values.shape[:2]
    flat = values.reshape(h * w, *values.shape[2:])
    out: npt.NDArray[Any] = np.take(flat, index, axis=0)
    return out.reshape(values.shape)


class NearestWarp:
    """``warp(values, flow, nearest=True)`` of several label maps along one flow: the sample
    pixels are found once, each map is then one gather (:func:`warp`'s nearest mode is this).

    Args:
        flow: ``float32[H, W, 2]`` flow from this frame to the partner; kept (as :attr:`flow`)
            and assumed unchanged while the warp is used.
    """

    def __init__(self, flow: npt.NDArray[np.floating[Any]]) -> None:
        flow = np.asarray(flow)
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"flow must be [H, W, 2], got {list(flow.shape)}")
        self.flow = flow
        map_x, map_y, outside = _sample_points(flow)
        self.index = _nearest_index(map_x, map_y)
        self.outside = np.flatnonzero(outside)

    def __call__(self, values: npt.NDArray[Any], *, fill: float = math.nan) -> npt.NDArray[Any]:
        """``values`` (``[H, W]`` or ``[H, W, C]`` on the partner's grid) warped: its dtype,
        ``fill`` where the sample point is outside the image (NaN means 0 for integer or bool
        values)."""
        values = np.asarray(values)
        if values.ndim not in (2, 3) or values.shape[:2] != self.flow.shape[:2]:
            raise ValueError(
                f"values must be [H, W] or [H, W, C] with H, W = {list(self.flow.shape[:2])}, "
                f"got {list(values.shape)}"
            )
        out = _take_nearest(values, self.index)
        integral = not np.issubdtype(out.dtype, np.floating)
        out.reshape(self.index.size, -1)[self.outside] = (
            0 if integral and math.isnan(fill) else fill
        )
        return out
