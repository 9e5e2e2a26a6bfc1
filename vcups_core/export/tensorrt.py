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
sizes of the optimisation profile; the cache that builds one per machine and reuses it lives
beside the predictors (:mod:`vcups_core.model.predictors.engine_cache`) and calls
:func:`build_engine`. This module imports nothing of the predictors, so the two never import
each other in a cycle.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vcups_core.export.trt_module import import_tensorrt as import_tensorrt  # re-exported

DEFAULT_OPT_SHAPE = (640, 1280)
"""``(H, W)`` the default optimisation profile is optimised for."""


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    fp16: bool = False,
    workspace_gb: float = 4.0,
    min_shape: tuple[int, int] = (256, 256),
    opt_shape: tuple[int, int] = DEFAULT_OPT_SHAPE,
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
        json.dumps(onnx_metadata(onnx_file), indent=2).encode(),
    )
    return out


def onnx_metadata(path: Path) -> dict[str, Any]:
    """The ``vcups_*`` metadata of an exported graph (empty if ``onnx`` is not installed)."""
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
