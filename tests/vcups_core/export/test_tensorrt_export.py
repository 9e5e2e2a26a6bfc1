"""TensorRT: honest failure without the package, and the engine cache path."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcups_core.export.tensorrt import build_engine, engine_cache_path
from vcups_core.model.predictor import TENSORRT_INSTALL_HINT


def _require_no_tensorrt() -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return
    pytest.skip("tensorrt is installed here; these tests cover its absence")  # pragma: no cover


def test_build_engine_says_what_to_install(tmp_path: Path) -> None:
    _require_no_tensorrt()
    with pytest.raises(ImportError) as info:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", fp16=True)
    assert str(info.value) == TENSORRT_INSTALL_HINT
    assert "pip install tensorrt-cu12" in str(info.value)
    assert "https://pypi.nvidia.com" in str(info.value)
    assert not (tmp_path / "model.engine").exists()


def test_engine_cache_path_is_keyed_by_gpu_version_and_size(tmp_path: Path) -> None:
    path = engine_cache_path(
        512, 1024, gpu_name="NVIDIA H100 80GB HBM3", trt_version="10.3.0", cache_dir=tmp_path
    )
    assert path == tmp_path / "nvidia_h100_80gb_hbm3-trt10.3.0-512x1024.engine"
    default = engine_cache_path(64, 96, gpu_name="RTX 4090", trt_version="10.0.1")
    assert default == Path("~/.cache/vcups/engines/rtx_4090-trt10.0.1-64x96.engine").expanduser()
    _require_no_tensorrt()
    with pytest.raises(ImportError, match="tensorrt-cu12"):
        engine_cache_path(64, 96, gpu_name="RTX 4090")
