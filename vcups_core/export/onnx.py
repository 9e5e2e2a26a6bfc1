"""ONNX export of the per-frame network and a torch-vs-onnxruntime parity check.

The exported graph is :meth:`PanopticCascadeMaskTrack.infer_raw` for one image: input
``image float32[3, H, W]`` (RGB in ``[0, 1]``, ``H`` and ``W`` dynamic), outputs
``boxes float32[N, 4]`` (input pixels), ``scores float32[N]``, ``classes int64[N]``,
``mask_probs float32[N, 28, 28]``, ``embeddings float32[N, D]`` and
``semantic_probs float32[S + 1, ceil(H / 4), ceil(W / 4)]`` (the semantic head's grid; ``N``
dynamic, possibly 0). It contains resize and normalisation, backbone + FPN, RPN (with NMS), the
cascade (with per-class NMS), the mask, semantic and tracking heads. Mask pasting,
thresholding and the panoptic merge are not in the graph:
:class:`~vcups_core.model.predictors.onnx_predictor.OnnxPredictor` runs them in numpy, exactly
as :class:`~vcups_core.model.predictors.torch_predictor.TorchPredictor` does.

Exported with the TorchScript-based exporter (``dynamo=False``): the dynamo exporter fails on
torchvision's ``batched_nms`` in this environment.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from vcups_core.configs.predictor import PredictorConfig
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.model.panoptic import semantic_map
from vcups_core.model.postprocess import OUTPUT_NAMES, MergeSettings
from vcups_core.model.predictors.base import Predictor
from vcups_core.model.predictors.exported import predictor_metadata
from vcups_core.model.predictors.load import load_predictor
from vcups_core.model.predictors.torch_predictor import TorchPredictor
from vcups_core.types import FramePrediction

INPUT_NAME = "image"
MIN_OPSET = 11
"""The oldest ONNX opset the graph exports to (opset 10 cannot pad to a size known at run time)."""
MIN_EXAMPLE_SIDE = 32
"""The smallest height or width of the example image the graph is traced (and checked) on."""


def check_export_options(opset: int, example_size: tuple[int, int]) -> None:
    """Refuse an opset or example size the export cannot use, before any work.

    Raises:
        ValueError: ``opset`` outside ``MIN_OPSET`` .. the newest torch exports, or a side of
            ``example_size`` below :data:`MIN_EXAMPLE_SIDE` (named as ``--opset``, ``--height``,
            ``--width``).
    """
    newest = int(torch.onnx._constants.ONNX_MAX_OPSET)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"--opset {opset}: this export needs an ONNX opset from {MIN_OPSET} to {newest} "
            "(default 17)"
        )
    for flag, side in zip(("--height", "--width"), example_size, strict=True):
        if side < MIN_EXAMPLE_SIDE:
            raise ValueError(
                f"{flag} {side}: expected an image side of at least {MIN_EXAMPLE_SIDE} pixels"
            )


class FrameGraph(nn.Module):
    """``image float32[3, H, W] -> RawOutputs`` of one frame (what gets exported)."""

    def __init__(self, model: PanopticCascadeMaskTrack) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        (raw,) = self.model.infer_raw([image])
        return tuple(raw)


def export_onnx(
    model: PanopticCascadeMaskTrack,
    path: str | Path,
    *,
    opset: int = 17,
    example_size: tuple[int, int] = (256, 320),
    seed: int = 0,
) -> Path:
    """Export the per-frame network to ONNX with dynamic image size and detection count.

    The model is copied to CPU/float32 in eval mode (the argument is left untouched), traced on
    one random ``example_size`` image, and saved atomically with metadata properties
    (``vcups_model_name``, ``vcups_categories``, ``vcups_merge``, ``vcups_weights_sha256``,
    ``vcups_outputs``, ``vcups_semantic_stride``) that the ONNX and TensorRT predictors read.

    Args:
        model: the network.
        path: destination ``.onnx`` file.
        opset: ONNX opset (17).
        example_size: ``(H, W)`` of the tracing input; any size works at run time.
        seed: seed of the random tracing input.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ImportError: if the ``onnx`` package is missing (``pip install vcups[export]``).
        ValueError: see :func:`check_export_options`.
    """
    check_export_options(opset, example_size)
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is installed in the venv
        raise ImportError("export_onnx needs the onnx package: pip install onnx") from exc
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cpu_model = copy.deepcopy(model).to("cpu").float().eval()
    graph = FrameGraph(cpu_model).eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.rand((3, *example_size), generator=generator)
    dynamic_axes = {
        INPUT_NAME: {1: "height", 2: "width"},
        "boxes": {0: "detections"},
        "scores": {0: "detections"},
        "classes": {0: "detections"},
        "mask_probs": {0: "detections"},
        "embeddings": {0: "detections"},
        "semantic_probs": {1: "grid_height", 2: "grid_width"},
    }
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Tracer warnings about Python values in torchvision's detection code are expected:
            # those code paths have ONNX-specific branches that keep the sizes dynamic.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        for key, value in predictor_metadata(cpu_model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


@dataclass(frozen=True)
class ParityTolerances:
    """What counts as "the same prediction" between torch and onnxruntime (float32, CPU).

    Attributes:
        box_atol: max abs box-coordinate difference in pixels.
        score_atol: max abs score difference.
        embedding_rtol: max abs embedding difference relative to the largest embedding value.
        semantic_atol: max abs semantic-probability difference.
        mask_mismatch: max fraction of differing pixels of a matched mask pair (over their
            union): bilinear pasting flips pixels whose probability is within float noise
            of the 0.5 threshold.
        panoptic_mismatch: max fraction of pixels whose panoptic category differs.
    """

    box_atol: float = 0.05
    score_atol: float = 1e-3
    embedding_rtol: float = 1e-3
    semantic_atol: float = 1e-3
    mask_mismatch: float = 0.005
    panoptic_mismatch: float = 0.005


@dataclass
class ImageParity:
    """Parity of one image (see :class:`ParityReport`)."""

    size: tuple[int, int]
    detections_torch: int
    detections_onnx: int
    matched: int
    box_max_diff: float
    score_max_diff: float
    embedding_max_rel_diff: float
    mask_max_mismatch: float
    semantic_max_diff: float
    panoptic_mismatch: float


@dataclass
class ParityReport:
    """Torch vs onnxruntime (or any two predictors: ``names``) on the same images.

    ``ImageParity.detections_torch`` / ``detections_onnx`` count the first / second
    predictor's detections.
    """

    tolerances: ParityTolerances
    images: list[ImageParity] = field(default_factory=list)
    names: tuple[str, str] = ("torch", "onnxruntime")

    def failures(self) -> list[str]:
        """Human-readable list of every exceeded tolerance (empty if all passed)."""
        tol = self.tolerances
        problems = []
        for i, im in enumerate(self.images):
            where = f"image {i} ({im.size[0]}x{im.size[1]})"
            if not im.detections_torch == im.detections_onnx == im.matched:
                problems.append(
                    f"{where}: {im.detections_torch} {self.names[0]} vs {im.detections_onnx} "
                    f"{self.names[1]} detections, {im.matched} matched"
                )
            checks = [
                ("box", im.box_max_diff, tol.box_atol),
                ("score", im.score_max_diff, tol.score_atol),
                ("embedding (relative)", im.embedding_max_rel_diff, tol.embedding_rtol),
                ("mask pixel mismatch", im.mask_max_mismatch, tol.mask_mismatch),
                ("semantic prob", im.semantic_max_diff, tol.semantic_atol),
                ("panoptic pixel mismatch", im.panoptic_mismatch, tol.panoptic_mismatch),
            ]
            problems += [
                f"{where}: {name} difference {value:.3g} > {limit:.3g}"
                for name, value, limit in checks
                if not value <= limit
            ]
        return problems

    @property
    def ok(self) -> bool:
        return not self.failures()

    def __str__(self) -> str:
        tol = self.tolerances
        head = (
            f"{'image':>12} {'dets a/b/m':>11} {'box px':>9} {'score':>9} {'embed rel':>9} "
            f"{'mask mis':>9} {'sem prob':>9} {'pan mis':>9}"
        )
        lines = [f"{self.names[0]} vs {self.names[1]} parity", head]
        for im in self.images:
            lines.append(
                f"{im.size[0]:>5}x{im.size[1]:<6} "
                f"{im.detections_torch:>3}/{im.detections_onnx:>3}/{im.matched:>3} "
                f"{im.box_max_diff:9.2e} {im.score_max_diff:9.2e} "
                f"{im.embedding_max_rel_diff:9.2e} {im.mask_max_mismatch:9.2e} "
                f"{im.semantic_max_diff:9.2e} {im.panoptic_mismatch:9.2e}"
            )
        lines.append(
            f"{'tolerance':>12} {'equal':>11} {tol.box_atol:9.2e} {tol.score_atol:9.2e} "
            f"{tol.embedding_rtol:9.2e} {tol.mask_mismatch:9.2e} {tol.semantic_atol:9.2e} "
            f"{tol.panoptic_mismatch:9.2e}"
        )
        lines.append("PASS" if self.ok else "FAIL: " + "; ".join(self.failures()))
        return "\n".join(lines)


def compare_predictions(
    a: FramePrediction, b: FramePrediction, *, num_things: int, merge: MergeSettings
) -> ImageParity:
    """Match detections of ``a`` and ``b`` (same class, IoU >= 0.9, greedy) and measure them.

    The panoptic mismatch compares the per-frame category maps
    (:func:`~vcups_core.model.panoptic.semantic_map` with ``num_things`` and ``merge``).
    """
    matched: list[tuple[int, int]] = []
    if len(a) and len(b):
        iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).numpy()
        iou[a.classes[:, None] != b.classes[None, :]] = 0.0
        used: set[int] = set()
        for i in range(len(a)):
            order = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] >= 0.9]
            if order:
                used.add(int(order[0]))
                matched.append((i, int(order[0])))

    def category_map(pred: FramePrediction) -> npt.NDArray[np.uint8]:
        return semantic_map(
            pred.semantic_probs,
            pred.panoptic_instance,
            pred.classes,
            num_things=num_things,
            semantic_stride=pred.semantic_stride,
            stuff_area_limit=merge.stuff_area_limit,
        )

    box = score = emb = mask = 0.0
    scale = max(float(np.abs(a.embeddings).max(initial=0.0)), 1e-12)
    for i, j in matched:
        box = max(box, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
        score = max(score, abs(float(a.scores[i] - b.scores[j])))
        emb = max(emb, float(np.abs(a.embeddings[i] - b.embeddings[j]).max()) / scale)
        mask_a, mask_b = a.masks.dense(i), b.masks.dense(j)
        union = int((mask_a | mask_b).sum())
        if union:
            mask = max(mask, float((mask_a ^ mask_b).sum()) / union)
    return ImageParity(
        size=(a.height, a.width),
        detections_torch=len(a),
        detections_onnx=len(b),
        matched=len(matched),
        box_max_diff=box,
        score_max_diff=score,
        embedding_max_rel_diff=emb,
        mask_max_mismatch=mask,
        semantic_max_diff=float(np.abs(a.semantic_probs - b.semantic_probs).max(initial=0.0)),
        panoptic_mismatch=float((category_map(a) != category_map(b)).mean()),
    )


def check_onnx_parity(
    model: PanopticCascadeMaskTrack,
    onnx_path: str | Path,
    images: Sequence[npt.NDArray[np.uint8]],
    *,
    tolerances: ParityTolerances | None = None,
) -> ParityReport:
    """Run ``model`` (torch, CPU) and the exported graph (onnxruntime, CPU) on ``images``.

    The graph is opened with :func:`~vcups_core.model.predictors.load.load_predictor`, as the
    node and ``vcups replay`` open it.

    Args:
        model: the network that was exported.
        onnx_path: the exported graph.
        images: ``uint8[H, W, 3]`` RGB images, any sizes (use sizes other than the export
            example to check that the graph is really dynamic).
        tolerances: see :class:`ParityTolerances`.

    Returns:
        A :class:`ParityReport` (``report.ok``, ``print(report)``).
    """
    torch_predictor = TorchPredictor(copy.deepcopy(model).to("cpu").float(), device="cpu")
    onnx_predictor = load_predictor(
        PredictorConfig(checkpoint=str(onnx_path), backend="onnxruntime", device="cpu"),
        categories=model.categories,
    )
    return compare_predictors(model, torch_predictor, onnx_predictor, images, tolerances=tolerances)


def compare_predictors(
    model: PanopticCascadeMaskTrack,
    first: Predictor,
    second: Predictor,
    images: Sequence[npt.NDArray[np.uint8]],
    *,
    tolerances: ParityTolerances | None = None,
    names: tuple[str, str] = ("torch", "onnxruntime"),
) -> ParityReport:
    """Run two predictors of ``model``'s weights (any backends, devices) on ``images``.

    Returns:
        A :class:`ParityReport` whose rows compare ``first``'s predictions with ``second``'s
        (:func:`compare_predictions`), labelled with ``names``.
    """
    report = ParityReport(tolerances or ParityTolerances(), names=names)
    for image in images:
        report.images.append(
            compare_predictions(
                first.predict(image),
                second.predict(image),
                num_things=model.categories.num_things,
                merge=model.merge,
            )
        )
    return report
