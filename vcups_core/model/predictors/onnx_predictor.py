"""The onnxruntime backend: the graph of :func:`vcups_core.export.onnx.export_onnx` run with
onnxruntime (CPU or CUDA provider), then the numpy post-processing every backend shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.model.postprocess import (
    OUTPUT_NAMES,
    RawOutputs,
    frame_prediction_from_raw,
    image_to_chw,
)
from vcups_core.model.predictors.exported import ExportedPredictor
from vcups_core.types import CategoryTable, FramePrediction


class OnnxPredictor(ExportedPredictor):
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
        ValueError: if the file is not a graph onnxruntime can load (empty, truncated, another
            format), or ``categories`` is ``None`` and the file stores none.
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
        errors = ort.capi.onnxruntime_pybind11_state  # they derive from Exception only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except (
            errors.Fail,
            errors.InvalidArgument,
            errors.InvalidGraph,
            errors.InvalidProtobuf,
            errors.NoSuchFile,
        ) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"{self.path}: not a readable ONNX graph (`vcups export` writes one): "
                f"{detail.rpartition(' failed:')[2]}"
            ) from None
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
