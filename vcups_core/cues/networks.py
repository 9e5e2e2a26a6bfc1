"""Depth and motion cues from user-supplied networks in a local TorchScript or ONNX file.

The paper's depth and motion mask come from Dynamo-Depth (``method.md`` §2.1); whoever has such a
network (or any other) exports it and points ``depth.weights`` / ``motion.weights`` at the file.
Nothing is downloaded.

File formats (chosen by the extension):

* ``.pt``, ``.ts``, ``.torchscript``: a TorchScript archive (``torch.jit.save`` of a scripted or
  traced module), run with torch on ``device``.
* ``.onnx``: run with onnxruntime, on the CUDA provider when ``device`` is a CUDA device and the
  provider is available, else on the CPU.

Input/output contract (``H``, ``W`` = the frame at the processing size):

* :class:`NetworkDepth` feeds ``float32[1, 3, H, W]``, the frame's RGB in ``[0, 1]``, and reads
  ``[1, 1, h, w]``, ``[1, h, w]`` or ``[h, w]`` positive depth of any scale (only ratios are
  used; a disparity network must convert to depth inside the graph, as a Monodepth2 or
  Dynamo-Depth export would with its ``disp_to_depth``).
* :class:`NetworkMotion` feeds ``float32[1, 6, H, W]``: the frame (channels 0-2) and its flow
  partner ``cues.partner`` (channels 3-5), RGB in ``[0, 1]``; it reads a motion probability of
  the same shapes, clipped to ``[0, 1]``.

The first output is used (a TorchScript module may also return a tuple or list whose first
item is the tensor). An output of another size ``h × w`` is resized bilinearly to ``H × W``. An
ONNX graph with a fixed input size gets the frame resized to that size. Depth that is not
positive and finite becomes NaN (unknown); a non-finite motion score becomes 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from vcups_core.cues.base import FloatMap, FrameCues

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
ONNX_SUFFIXES = (".onnx",)

Array = npt.NDArray[np.float32]


class _Runner(Protocol):
    """A loaded network: ``float32[N, C, H, W]`` in, its first output as ``float32`` out.

    Attributes:
        path: the network file.
        input_size: ``(H, W)`` the graph requires, or None if it takes any size.
    """

    path: Path
    input_size: tuple[int, int] | None

    def __call__(self, batch: Array) -> Array: ...


class _TorchScriptRunner:
    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.input_size: tuple[int, int] | None = None  # TorchScript takes any size
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated in torch 2.10+, but it is what users have exported
                warnings.simplefilter("ignore", FutureWarning)
                load = torch.jit.load  # untyped in torch's stubs
                module = load(str(path), map_location=self.device)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ValueError(
                f"{path}: expected a TorchScript archive (torch.jit.save), cannot load it ({exc})"
            ) from exc
        self.module = module.eval()

    def __call__(self, batch: Array) -> Array:
        with torch.inference_mode():
            out: Any = self.module(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{self.path}: expected the network to return a tensor, got {out!r}")
        result: Array = out.detach().float().cpu().numpy()
        return result


class _OnnxRunner:
    def __init__(self, path: Path, device: str, channels: int) -> None:
        import onnxruntime as ort

        self.path = path
        self.input_size: tuple[int, int] | None = None  # set below for a fixed-size graph
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise ValueError(f"{path}: expected an ONNX graph, cannot load it ({exc})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"{path}: expected a graph with one input [1, {channels}, H, W], got "
                f"{len(inputs)} inputs ({', '.join(i.name for i in inputs)})"
            )
        self.input_name = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != channels):
            raise ValueError(
                f"{path}: expected input [1, {channels}, H, W], graph input "
                f"{self.input_name!r} is {shape}"
            )
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            self.input_size = (shape[2], shape[3])

    def __call__(self, batch: Array) -> Array:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})
        return np.asarray(outputs[0], dtype=np.float32)


def open_network(path: str | Path, device: str = "cpu", *, channels: int = 3) -> _Runner:
    """Load a TorchScript or ONNX network file (format from the extension).

    Args:
        path: ``.pt``/``.ts``/``.torchscript`` (TorchScript) or ``.onnx``.
        device: torch device; for ONNX, ``cuda*`` selects the CUDA provider when available.
        channels: input channels the caller will feed (checked against an ONNX graph's input).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unknown extension or a file that does not load.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"network file {p}: no such file")
    suffix = p.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _TorchScriptRunner(p, device)
    if suffix in ONNX_SUFFIXES:
        return _OnnxRunner(p, device, channels)
    raise ValueError(
        f"network file {p}: unknown extension {p.suffix!r}, expected one of "
        f"{', '.join(TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES)}"
    )


def _to_input(images: list[npt.NDArray[np.uint8]], size: tuple[int, int] | None) -> Array:
    """``uint8[H, W, 3]`` RGB frames → ``float32[1, 3 * len(images), H', W']`` in ``[0, 1]``."""
    planes: list[npt.NDArray[Any]] = list(images)
    if size is not None:
        h, w = size
        planes = [
            img
            if img.shape[:2] == (h, w)
            else cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            for img in planes
        ]
    stacked = np.concatenate(planes, axis=2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(stacked.transpose(2, 0, 1)[None])


def _single_map(out: Array, path: Path, height: int, width: int, what: str) -> Array:
    """A ``[1, 1, h, w]``/``[1, h, w]``/``[h, w]`` output as ``float32[height, width]``."""
    shape = list(out.shape)
    if out.ndim == 4 and shape[:2] == [1, 1]:
        plane = out[0, 0]
    elif out.ndim == 3 and shape[0] == 1:
        plane = out[0]
    elif out.ndim == 2:
        plane = out
    else:
        raise ValueError(
            f"{path}: expected a {what} output [1, 1, H, W], [1, H, W] or [H, W], got {shape}"
        )
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if plane.shape != (height, width):
        plane = np.asarray(
            cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32
        )
    return plane


class NetworkDepth:
    """Depth from a network file (:class:`~vcups_core.cues.base.DepthEstimator`).

    Args:
        path: TorchScript or ONNX file (contract in the module docstring).
        device: torch device (``"cpu"``, ``"cuda"``).

    Raises:
        FileNotFoundError, ValueError: see :func:`open_network`.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.runner = open_network(path, device, channels=3)
        self.name = f"network:{Path(path).name}"

    def __call__(self, cues: FrameCues) -> FloatMap:
        """``float32[H, W]`` depth of ``cues.frame`` (any scale, NaN = unknown).

        Raises:
            ValueError: if the output has the wrong rank or channel count.
        """
        frame = cues.frame
        out = self.runner(_to_input([frame.image], self.runner.input_size))
        raw = np.asarray(out, dtype=np.float32)
        raw = np.where(np.isfinite(raw) & (raw > 0), raw, np.float32(np.nan))
        depth = _single_map(raw, self.runner.path, frame.height, frame.width, "depth")
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return depth


class NetworkMotion:
    """Motion probability from a network file (:class:`~vcups_core.cues.base.MotionEstimator`).

    Args:
        path: TorchScript or ONNX file (contract in the module docstring).
        device: torch device (``"cpu"``, ``"cuda"``).

    Raises:
        FileNotFoundError, ValueError: see :func:`open_network`.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.runner = open_network(path, device, channels=6)
        self.name = f"network:{Path(path).name}"

    def __call__(
        self, cues: FrameCues, where: npt.NDArray[np.bool_] | None = None
    ) -> tuple[FloatMap, FloatMap | None]:
        """``(score float32[H, W] in [0, 1], None)``: the network does not model the camera
        (``where`` is ignored: the network scores every pixel).

        Raises:
            ValueError: if the frame and its partner differ in size, or the output has the
                wrong rank or channel count.
        """
        frame, partner = cues.frame, cues.partner
        if frame.image.shape != partner.image.shape:
            raise ValueError(
                f"{self.runner.path}: frame {frame.height}x{frame.width} and flow partner "
                f"{partner.height}x{partner.width} differ in size"
            )
        out = self.runner(_to_input([frame.image, partner.image], self.runner.input_size))
        score = _single_map(out, self.runner.path, frame.height, frame.width, "motion")
        score = np.clip(np.nan_to_num(score, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
        return score.astype(np.float32, copy=False), None
