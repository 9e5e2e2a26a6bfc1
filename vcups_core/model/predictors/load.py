"""``load_predictor``: a :class:`~vcups_core.configs.predictor.PredictorConfig` -> a running
:class:`~vcups_core.model.predictors.base.Predictor`, the one way every front door opens a
network (the node, ``vcups replay``, ``vcups evaluate``, the export's parity check of the graph,
the demo and its held-out scoring). Each backend is imported only when it is asked for."""

from __future__ import annotations

from vcups_core.checks import check_device, check_model_file
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.model.predictors.base import Predictor
from vcups_core.types import CategoryTable

EMPTY_CHECKPOINT = (
    "model.checkpoint is empty: set it to a vcups checkpoint (.pt), an exported .onnx "
    "(backend onnxruntime, or tensorrt through the engine cache) or a TensorRT .engine "
    "(backend tensorrt)"
)
"""The error of a config that names no network (the node's first run without parameters)."""


def load_predictor(
    cfg: PredictorConfig,
    *,
    categories: CategoryTable | None = None,
    names: tuple[str, str] = ("model.checkpoint", "model.device"),
) -> Predictor:
    """Open the network ``cfg`` names.

    Args:
        cfg: ``checkpoint``: a ``.pt``/``.pth`` checkpoint for ``torch``; an ``.onnx`` for
            ``onnxruntime``; a ``.engine`` for ``tensorrt``, or an ``.onnx`` whose engine comes
            from the cache (:func:`~vcups_core.model.predictors.engine_cache.cached_engine`,
            in ``engine_cache_dir``, built there once). ``device``: ``cpu``/``cuda[:i]``
            (onnxruntime uses its CUDA provider for ``cuda*``; TensorRT always runs on CUDA).
            ``half``: FP16 (torch on CUDA; an FP16 engine for TensorRT from an ``.onnx``; a
            given ``.engine`` has its precision fixed). ``config``: torch only, a model config
            YAML built instead of the checkpoint's own (e.g. other inference thresholds); the
            exported backends take the settings their graph was exported with.
        categories: overrides the category table stored with an exported graph or engine.
        names: what the checkpoint and the device are called in error messages (the node's
            parameters by default; the CLIs pass ``("--checkpoint", "--device")``).

    Raises:
        ValueError: ``cfg.checkpoint`` is empty, a folder, an empty file or cannot be used;
            ``cfg.device`` is misspelt, or names a CUDA GPU this machine lacks (torch backend;
            onnxruntime falls back to its CPU provider).
        FileNotFoundError: the checkpoint does not exist.
        ImportError: the backend's package is missing (with what to install).
    """
    if not cfg.checkpoint:
        raise ValueError(EMPTY_CHECKPOINT)
    check_device(cfg.device, need_cuda=cfg.backend == "torch", what=names[1])
    path = check_model_file(cfg.checkpoint, names[0])
    if cfg.backend == "torch":
        from vcups_core.model.checkpoint import load_checkpoint
        from vcups_core.model.predictors.torch_predictor import TorchPredictor

        model, _ = load_checkpoint(path, config=cfg.config or None)
        return TorchPredictor(model, device=cfg.device, half=cfg.half)
    if cfg.backend == "onnxruntime":
        from vcups_core.model.predictors.onnx_predictor import OnnxPredictor

        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if cfg.device.startswith("cuda")
            else ["CPUExecutionProvider"]
        )
        return OnnxPredictor(path, categories, providers=providers)
    if cfg.backend == "tensorrt":
        from vcups_core.model.predictors.tensorrt_predictor import TensorRTPredictor

        engine = path
        if engine.suffix == ".onnx":
            from vcups_core.model.predictors.engine_cache import cached_engine

            engine = cached_engine(engine, cache_dir=cfg.engine_cache_dir or None, fp16=cfg.half)
        device = cfg.device if cfg.device.startswith("cuda") else "cuda"
        return TensorRTPredictor(engine, categories, device=device)
    raise ValueError(
        f"model.backend must be 'torch', 'onnxruntime' or 'tensorrt', got {cfg.backend!r}"
    )
