"""Build a TensorRT engine from the exported ONNX graph (TensorRT 10 and 11 Python API).

**Not exercised on a GPU in this repository's CI**: it needs an NVIDIA GPU and the ``tensorrt``
package (``pip install tensorrt-cu13 --extra-index-url https://pypi.nvidia.com``). Without them
every function that needs TensorRT raises :class:`ImportError` saying what to install. The graph
uses ``NonMaxSuppression`` and ``RoiAlign``, which TensorRT's ONNX parser supports
(data-dependent output sizes are handled by the predictor's output allocator).

Precision: TensorRT 10 builds an fp16 engine from the float32 graph with ``BuilderFlag.FP16``.
TensorRT 11 removed that flag with the rest of weak typing (every network is strongly typed:
the graph's own types decide); it builds fp32 engines from this graph, and ``fp16=True`` raises
a :class:`RuntimeError` that says so before any work is done.

Engines are specific to the model, the GPU, the TensorRT version, the precision and the input
sizes of the optimisation profile: :func:`engine_cache_path` keys the cache on all of them, and
:func:`cached_engine` (what ``load_predictor(... .onnx, backend="tensorrt")``, the node and
``vcups replay`` use) builds an engine once and reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from vcups_core.export.trt_module import import_tensorrt

DEFAULT_CACHE_DIR = Path("~/.cache/vcups/engines")
_DEFAULT_OPT_SHAPE = (640, 1280)  # the input size the default profile is optimised for


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
        trt_version = str(import_tensorrt().__version__)
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
    meta = _onnx_metadata(path)
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

    The engine has :func:`build_engine`'s default profile (inputs from 256x256 to 1024x2048,
    optimised for 640x1280; call :func:`build_engine` directly for another). The cache key
    (:func:`engine_cache_path`) is the graph (:func:`onnx_model_id`), the GPU, the TensorRT
    version, the precision and the optimised size; an engine found there is used as it is.

    Raises:
        ImportError: if the engine must be built (or the key needs TensorRT's version) and
            TensorRT is not installed.
        FileNotFoundError: if ``onnx_path`` does not exist.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX graph")
    engine = engine_cache_path(
        *_DEFAULT_OPT_SHAPE,
        model_id=onnx_model_id(path),
        fp16=fp16,
        gpu_name=gpu_name,
        trt_version=trt_version,
        cache_dir=cache_dir,
    )
    if engine.is_file():
        return engine
    return build_engine(path, engine, fp16=fp16)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    fp16: bool = False,
    workspace_gb: float = 4.0,
    min_shape: tuple[int, int] = (256, 256),
    opt_shape: tuple[int, int] = _DEFAULT_OPT_SHAPE,
    max_shape: tuple[int, int] = (1024, 2048),
) -> Path:
    """Parse the ONNX graph and build a serialized engine with one optimisation profile.

    Args:
        onnx_path: graph from :func:`vcups_core.export.onnx.export_onnx`.
        engine_path: where the engine goes (written atomically); a ``<engine>.json`` sidecar
            with the graph's ``vcups_*`` metadata is written next to it for the predictor.
        fp16: allow FP16 kernels (``BuilderFlag.FP16``).
        workspace_gb: builder workspace memory pool limit.
        min_shape, opt_shape, max_shape: ``(H, W)`` range of the input image
            (input shape ``[3, H, W]``).

    Returns:
        ``engine_path`` as a :class:`Path`.

    Raises:
        ImportError: if TensorRT is not installed (with install instructions).
        RuntimeError: if ``fp16`` is asked of a TensorRT without ``BuilderFlag.FP16`` (11 and
            later), or if parsing or building fails (parser errors are included).
    """
    trt = import_tensorrt()
    fp16_flag = getattr(trt.BuilderFlag, "FP16", None) if fp16 else None
    if fp16 and fp16_flag is None:
        raise RuntimeError(
            f"fp16=True needs BuilderFlag.FP16, which TensorRT {trt.__version__} does not have "
            "(TensorRT 11 removed weak typing: networks take their precision from the ONNX "
            "graph, and vcups exports float32). Build an fp32 engine (model.half: false) or "
            "use TensorRT 10 for fp16."
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    onnx_file = Path(onnx_path)
    if not parser.parse_from_file(str(onnx_file)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_file}:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16_flag is not None:
        config.set_flag(fp16_flag)
    profile = builder.create_optimization_profile()
    input_name = network.get_input(0).name
    profile.set_shape(input_name, (3, *min_shape), (3, *opt_shape), (3, *max_shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_file}")
    out = Path(engine_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, bytes(serialized))
    _atomic_write(
        out.with_suffix(out.suffix + ".json"),
        json.dumps(_onnx_metadata(onnx_file), indent=2).encode(),
    )
    return out


def _onnx_metadata(path: Path) -> dict[str, Any]:
    try:
        import onnx
    except ImportError:  # pragma: no cover - the sidecar is optional
        return {}
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("vcups_")}


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
