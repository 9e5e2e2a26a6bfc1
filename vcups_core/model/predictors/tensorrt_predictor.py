"""The TensorRT backend: an engine of :func:`vcups_core.export.tensorrt.build_engine` (or of the
engine cache, :mod:`vcups_core.model.predictors.engine_cache`) run on one CUDA stream, then the
numpy post-processing every backend shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from vcups_core.export.trt_module import import_tensorrt
from vcups_core.model.postprocess import OUTPUT_NAMES, RawOutputs, frame_prediction_from_raw
from vcups_core.model.predictors.exported import ExportedPredictor
from vcups_core.model.predictors.torch_predictor import image_to_tensor
from vcups_core.types import CategoryTable, FramePrediction


class TensorRTPredictor(ExportedPredictor):
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
