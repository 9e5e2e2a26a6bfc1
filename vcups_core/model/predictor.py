"""One-image predictors behind one protocol: torch, onnxruntime and TensorRT backends.

Every backend runs the same network part (:meth:`PanopticCascadeMaskTrack.infer_raw`, or its
exported graph) and the same numpy post-processing
(:func:`~vcups_core.model.postprocess.frame_prediction_from_raw`), so they return the same
:class:`~vcups_core.types.FramePrediction` for the same image up to floating-point differences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch

from vcups_core.configs.model import ModelConfig
from vcups_core.export.trt_module import import_tensorrt
from vcups_core.model.checkpoint import (
    categories_from_dict,
    categories_to_dict,
    load_checkpoint,
    weights_sha256,
)
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack, raw_outputs_to_numpy
from vcups_core.model.postprocess import (
    OUTPUT_NAMES,
    MergeSettings,
    RawOutputs,
    check_rgb_image,
    frame_prediction_from_raw,
    image_to_chw,
)
from vcups_core.types import CategoryTable, FramePrediction

Backend = Literal["torch", "onnxruntime", "tensorrt"]


@runtime_checkable
class Predictor(Protocol):
    """What the streaming pipeline and the ROS node call, whatever the backend.

    Attributes:
        categories: the model's category table (ids of ``panoptic_semantic``).
        model_name: published as ``PanopticInfo.model_name``.
        checksum: SHA-256 of the weights (the same for a checkpoint and its exports).
    """

    categories: CategoryTable
    model_name: str
    checksum: str

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        """Predict one ``uint8[H, W, 3]`` RGB image at its own resolution."""
        ...


def predictor_metadata(model: PanopticCascadeMaskTrack) -> dict[str, str]:
    """String metadata that travels with exported graphs/engines (JSON values)."""
    return {
        "vcups_model_name": model.name,
        "vcups_categories": json.dumps(categories_to_dict(model.categories)),
        "vcups_merge": json.dumps(
            {
                "score_threshold": model.merge.score_threshold,
                "overlap_threshold": model.merge.overlap_threshold,
                "stuff_area_limit": model.merge.stuff_area_limit,
                "mask_threshold": model.merge.mask_threshold,
            }
        ),
        "vcups_weights_sha256": weights_sha256(model.state_dict()),
        "vcups_outputs": ",".join(OUTPUT_NAMES),
        "vcups_semantic_stride": str(model.semantic_head.common_stride),
    }


def _settings_from_metadata(meta: dict[str, str]) -> MergeSettings:
    data = json.loads(meta.get("vcups_merge", "{}"))
    return MergeSettings(
        score_threshold=float(data.get("score_threshold", 0.5)),
        overlap_threshold=float(data.get("overlap_threshold", 0.5)),
        stuff_area_limit=int(data.get("stuff_area_limit", 4096)),
        mask_threshold=float(data.get("mask_threshold", 0.5)),
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


class _ExportedPredictor:
    """What the ONNX and TensorRT predictors read from an exported graph's ``vcups_*`` metadata."""

    path: Path
    categories: CategoryTable
    settings: MergeSettings
    semantic_stride: int
    model_name: str
    checksum: str

    def _read_metadata(
        self, meta: dict[str, str], categories: CategoryTable | None, *, missing: str
    ) -> None:
        if categories is None:
            if "vcups_categories" not in meta:
                raise ValueError(f"{missing}: pass categories=")
            categories = categories_from_dict(json.loads(meta["vcups_categories"]))
        self.categories = categories
        self.settings = _settings_from_metadata(meta)
        # graphs exported before the semantic head kept its own grid output input resolution
        self.semantic_stride = int(meta.get("vcups_semantic_stride", "1"))
        self.model_name = meta.get("vcups_model_name", self.path.stem)
        self.checksum = meta.get("vcups_weights_sha256") or _file_sha256(self.path)


class OnnxPredictor(_ExportedPredictor):
    """Run the graph written by :func:`vcups_core.export.onnx.export_onnx` with onnxruntime.

    The graph maps ``image float32[3, H, W]`` in ``[0, 1]`` to the :class:`RawOutputs`;
    pasting masks and placing the instances run here in numpy, exactly as for
    :class:`TorchPredictor`.

    Args:
        onnx_path: the exported ``.onnx`` file.
        categories: the category table; ``None`` reads the one stored in the file's metadata.
        providers: onnxruntime execution providers, names or ``(name, options)`` pairs
            (default: CUDA if available, then CPU). The CUDA provider runs convolutions in
            TF32 unless given ``{"use_tf32": "0"}``: probabilities then match the CPU's within
            float32 noise instead of about 3e-3 (checked on an H200 by bench_gpu.py).
        threads: intra-op threads (0: onnxruntime's default).

    Raises:
        ImportError: if onnxruntime is not installed (``pip install vcups[export]``).
        ValueError: if ``categories`` is ``None`` and the file stores none.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        categories: CategoryTable | None = None,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        *,
        threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is installed in the venv
            raise ImportError(
                "OnnxPredictor needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)"
            ) from exc
        self.path = Path(onnx_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if providers is None:
            available = ort.get_available_providers()
            providers = [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
        self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        meta: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._read_metadata(meta, categories, missing=f"{self.path} stores no categories")
        self.input_name = self.session.get_inputs()[0].name

    def run_raw(self, image: npt.NDArray[np.uint8]) -> RawOutputs[npt.NDArray[Any]]:
        """The graph's outputs for one image (numpy)."""
        outputs = self.session.run(list(OUTPUT_NAMES), {self.input_name: image_to_chw(image)})
        return RawOutputs(*outputs)

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        return frame_prediction_from_raw(
            self.run_raw(image),
            image_size=(int(image.shape[0]), int(image.shape[1])),
            semantic_stride=self.semantic_stride,
            settings=self.settings,
        )


class TensorRTPredictor(_ExportedPredictor):
    """Run a TensorRT engine built by :func:`vcups_core.export.tensorrt.build_engine`.

    Written against the TensorRT Python API that versions 10 and 11 share (``trt.Runtime``,
    ``deserialize_cuda_engine``, ``create_execution_context``, ``set_input_shape``,
    ``set_tensor_address``, ``execute_async_v3``) with torch CUDA tensors as device buffers.
    The number of detections is data-dependent, so outputs are allocated through a
    ``trt.IOutputAllocator``. The image is converted and the engine run on one CUDA stream.

    **Not run in this repository's CI**: it needs an NVIDIA GPU and the ``tensorrt`` package,
    neither of which the development machine has. Without ``tensorrt`` the constructor raises
    :class:`ImportError` with the install instructions.

    Args:
        engine_path: serialized engine (``.engine``); a ``<engine>.json`` sidecar written by
            ``build_engine`` provides categories and merge settings.
        categories: overrides the sidecar's category table.
        device: CUDA device.

    Raises:
        ImportError: if ``tensorrt`` is not installed.
        RuntimeError: if torch has no CUDA device or the engine cannot be deserialised.
    """

    def __init__(
        self,
        engine_path: str | Path,
        categories: CategoryTable | None = None,
        *,
        device: str = "cuda",
    ) -> None:
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError("TensorRTPredictor needs a CUDA GPU (torch.cuda is unavailable)")
        self.path = Path(engine_path)
        self.device = torch.device(device)
        sidecar = self.path.with_suffix(self.path.suffix + ".json")
        meta: dict[str, str] = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        self._read_metadata(meta, categories, missing=f"{sidecar} is missing")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"could not deserialise {self.path} (TensorRT version or GPU mismatch)"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
        self._allocator = _make_output_allocator(trt, self.device)
        torch_dtypes = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT64: torch.int64,
        }
        for name in OUTPUT_NAMES:
            self._allocator.dtypes[name] = torch_dtypes[self.engine.get_tensor_dtype(name)]
            self.context.set_output_allocator(name, self._allocator)

    @torch.no_grad()
    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        with torch.cuda.stream(self.stream):  # the conversion must finish before the engine reads
            chw = image_to_tensor(image, self.device)
            self.context.set_input_shape("image", tuple(chw.shape))
            self.context.set_tensor_address("image", chw.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        arrays = [self._allocator.result(name).cpu().numpy() for name in OUTPUT_NAMES]
        return frame_prediction_from_raw(
            RawOutputs(*arrays),
            image_size=(int(image.shape[0]), int(image.shape[1])),
            semantic_stride=self.semantic_stride,
            settings=self.settings,
        )


def _make_output_allocator(trt: Any, device: torch.device) -> Any:
    """A ``trt.IOutputAllocator`` backed by torch CUDA tensors (outputs of unknown size).

    ``result(name)`` views the bytes TensorRT wrote as a tensor of the notified shape and of
    the dtype recorded in ``dtypes[name]`` (filled from the engine by the predictor).
    """

    class _TorchOutputAllocator(trt.IOutputAllocator):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, torch.Tensor] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.dtypes: dict[str, torch.dtype] = {}

        def reallocate_output(
            self, tensor_name: str, memory: int, size: int, alignment: int
        ) -> int:
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.numel() < max(size, 1):
                buf = torch.empty(max(size, 1), dtype=torch.uint8, device=device)
                self.buffers[tensor_name] = buf
            return int(buf.data_ptr())

        def reallocate_output_async(
            self, tensor_name: str, memory: int, size: int, alignment: int, stream: int
        ) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(int(s) for s in shape)

        def result(self, name: str) -> torch.Tensor:
            dtype = self.dtypes[name]
            shape = self.shapes[name]
            count = int(np.prod(shape)) if shape else 1
            nbytes = count * torch.empty((), dtype=dtype).element_size()
            return self.buffers[name][:nbytes].view(dtype).reshape(shape)

    return _TorchOutputAllocator()


def load_predictor(
    path: str | Path,
    backend: Backend = "torch",
    device: str = "cpu",
    *,
    half: bool = False,
    categories: CategoryTable | None = None,
    config: ModelConfig | str | Path | None = None,
    engine_cache_dir: str | Path | None = None,
) -> Predictor:
    """Open a predictor for a checkpoint (``.pt``), an ONNX graph or a TensorRT engine.

    Args:
        path: ``.pt``/``.pth`` checkpoint for ``torch``; ``.onnx`` for ``onnxruntime``;
            ``.engine`` for ``tensorrt``, or ``.onnx``: its engine comes from the cache
            (:func:`vcups_core.export.tensorrt.cached_engine`, built there once).
        backend: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        device: ``"cpu"``/``"cuda[:i]"`` (onnxruntime uses CUDA when ``device`` starts with
            ``cuda`` and the CUDA provider is available).
        half: FP16 (torch on CUDA; for TensorRT from ``.onnx``, an FP16 engine; a given
            ``.engine`` has its precision fixed).
        categories: override the stored category table (onnxruntime, TensorRT).
        config: torch only: a model config (or YAML path) to build instead of the one stored
            in the checkpoint (e.g. other inference thresholds); ignored by the exported
            backends, whose graph fixes the network settings.
        engine_cache_dir: TensorRT engine cache (default ``~/.cache/vcups/engines``).

    Raises:
        ValueError: on an unknown backend.
        ImportError: if the backend's package is missing.
    """
    if backend == "torch":
        model, _ = load_checkpoint(path, config=config)
        return TorchPredictor(model, device=device, half=half)
    if backend == "onnxruntime":
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if device.startswith("cuda")
            else ["CPUExecutionProvider"]
        )
        return OnnxPredictor(path, categories, providers=providers)
    if backend == "tensorrt":
        engine = Path(path)
        if engine.suffix == ".onnx":
            from vcups_core.export.tensorrt import cached_engine

            engine = cached_engine(engine, cache_dir=engine_cache_dir, fp16=half)
        return TensorRTPredictor(
            engine, categories, device=device if device.startswith("cuda") else "cuda"
        )
    raise ValueError(f"backend must be 'torch', 'onnxruntime' or 'tensorrt', got {backend!r}")
