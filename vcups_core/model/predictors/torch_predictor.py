"""The torch backend: a :class:`~vcups_core.model.meta_arch.PanopticCascadeMaskTrack` run with
PyTorch (CPU or CUDA), then the numpy post-processing every backend shares."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from vcups_core.model.checkpoint import weights_sha256
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack, raw_outputs_to_numpy
from vcups_core.model.postprocess import check_rgb_image, frame_prediction_from_raw, image_to_chw
from vcups_core.types import FramePrediction


class TorchPredictor:
    """Run a :class:`PanopticCascadeMaskTrack` with PyTorch.

    Args:
        model: the network (put in eval mode and moved to ``device``).
        device: torch device, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        half: FP16 weights and inputs (CUDA only; outputs are cast back to float32).

    torch's TF32 settings are left as they are: PyTorch's default runs cuDNN convolutions in
    TF32 on Ampere and newer GPUs (faster; probabilities differ from the CPU's by about 3e-3).
    ``torch.backends.cudnn.allow_tf32 = False`` gives CPU-equal output.

    Raises:
        ValueError: if ``half`` is requested on a CPU device.
    """

    def __init__(
        self,
        model: PanopticCascadeMaskTrack,
        device: str | torch.device = "cpu",
        half: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise ValueError("half=True needs a CUDA device (FP16 on CPU is not supported here)")
        self.half = half
        self.model = model.to(self.device).eval()
        if half:
            self.model.half()
        self.categories = model.categories
        self.settings = model.merge  # the model config's inference thresholds, as exported ones
        self.model_name = model.name
        self.checksum = weights_sha256(model.state_dict())

    @torch.no_grad()
    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        chw = image_to_tensor(image, self.device)
        if self.half:
            chw = chw.half()
        (raw,) = self.model.infer_raw([chw])
        return frame_prediction_from_raw(
            raw_outputs_to_numpy(raw),
            image_size=(int(image.shape[0]), int(image.shape[1])),
            semantic_stride=self.model.semantic_head.common_stride,
            settings=self.model.merge,
        )


def image_to_tensor(image: npt.NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    """``uint8[H, W, 3]`` RGB -> contiguous ``float32[3, H, W]`` in ``[0, 1]`` on ``device``.

    On a GPU the uint8 image is copied and converted there: a quarter of the bytes over the bus
    and no CPU pass over float pixels (at 1024x2048 on an H200 host, 8-11 ms less per frame than
    converting with :func:`image_to_chw` first; ``benchmarks/bench_gpu.py``). On the CPU it is
    :func:`image_to_chw`.

    Raises:
        ValueError: if the image is not ``uint8[H, W, 3]``.
    """
    if device.type == "cpu":
        return torch.from_numpy(image_to_chw(image))
    pixels = torch.from_numpy(np.ascontiguousarray(check_rgb_image(image))).to(device)
    return pixels.permute(2, 0, 1).contiguous().float().div_(255.0)
