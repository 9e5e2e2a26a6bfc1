"""The TensorRT engine cache: an exported ``.onnx`` graph -> an engine built once per machine.

Engines are specific to the model, the GPU, the TensorRT version, the precision and the input
sizes of the optimisation profile: :func:`engine_cache_path` keys the cache on all of them, and
:func:`cached_engine` (what :func:`~vcups_core.model.predictors.load.load_predictor` uses for an
``.onnx`` with ``backend: tensorrt``: the node, ``vcups replay``, ``vcups evaluate``) builds an
engine once with :func:`vcups_core.export.tensorrt.build_engine` and reuses it.

Imports go one way: this module uses the builder (:mod:`vcups_core.export.tensorrt`), which
imports nothing of the predictors.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from vcups_core.export import tensorrt as tensorrt_export

DEFAULT_CACHE_DIR = Path("~/.cache/vcups/engines")
"""Where engines go when no cache folder is given (``model.engine_cache_dir`` empty)."""


def engine_cache_path(
    height: int,
    width: int,
    *,
    model_id: str,
    fp16: bool = False,
    gpu_name: str | None = None,
    trt_version: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """``<cache_dir>/<model>-<gpu>-trt<version>-<fp16|fp32>-<H>x<W>.engine``.

    Args:
        height, width: the input size the engine is optimised for.
        model_id: which network (:func:`onnx_model_id`); letters, digits, ``._-`` are kept.
        fp16: the engine's precision.
        gpu_name: e.g. ``"NVIDIA H100 80GB HBM3"``; default: ``torch.cuda.get_device_name()``.
        trt_version: default: ``tensorrt.__version__`` (needs TensorRT installed).
        cache_dir: default :data:`DEFAULT_CACHE_DIR`.

    Raises:
        ImportError: if ``trt_version`` is not given and TensorRT is missing.
        RuntimeError: if ``gpu_name`` is not given and there is no CUDA device.
    """
    if trt_version is None:  # first: without TensorRT, the install hint is the useful error
        trt_version = str(tensorrt_export.import_tensorrt().__version__)
    if gpu_name is None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("engine_cache_path needs gpu_name= or a CUDA device")
        gpu_name = torch.cuda.get_device_name()
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name).strip("_").lower()
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
    precision = "fp16" if fp16 else "fp32"
    root = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
    name = f"{model}-{gpu}-trt{trt_version}-{precision}-{height}x{width}.engine"
    return root.expanduser() / name


def onnx_model_id(onnx_path: str | Path) -> str:
    """A short id of an exported graph: its ``vcups_model_name`` and the first 16 hex digits of
    its weights' SHA-256 (``vcups_weights_sha256``; the file's own SHA-256 when absent)."""
    path = Path(onnx_path)
    meta = tensorrt_export.onnx_metadata(path)
    digest = meta.get("vcups_weights_sha256") or hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{meta.get('vcups_model_name', path.stem)}-{digest[:16]}"


def cached_engine(
    onnx_path: str | Path,
    *,
    cache_dir: str | Path | None = None,
    fp16: bool = False,
    gpu_name: str | None = None,
    trt_version: str | None = None,
) -> Path:
    """The engine of ``onnx_path`` from the cache, built there first if it is not (minutes).

    The engine has :func:`~vcups_core.export.tensorrt.build_engine`'s default profile (inputs
    from 256x256 to 1024x2048, optimised for 640x1280; call ``build_engine`` directly for
    another). The cache key (:func:`engine_cache_path`) is the graph (:func:`onnx_model_id`),
    the GPU, the TensorRT version, the precision and the optimised size; an engine found there
    is used as it is.

    Raises:
        ImportError: if the engine must be built (or the key needs TensorRT's version) and
            TensorRT is not installed.
        FileNotFoundError: if ``onnx_path`` does not exist.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX graph")
    engine = engine_cache_path(
        *tensorrt_export.DEFAULT_OPT_SHAPE,
        model_id=onnx_model_id(path),
        fp16=fp16,
        gpu_name=gpu_name,
        trt_version=trt_version,
        cache_dir=cache_dir,
    )
    if engine.is_file():
        return engine
    return tensorrt_export.build_engine(path, engine, fp16=fp16)
