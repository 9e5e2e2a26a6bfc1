"""TensorRT: honest failure without the package, and the engine cache path."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from vcups_core.config import load_config
from vcups_core.configs.model import ModelConfig
from vcups_core.export.onnx import export_onnx
from vcups_core.export.tensorrt import (
    build_engine,
    cached_engine,
    engine_cache_path,
    onnx_model_id,
)
from vcups_core.model.build import build_model
from vcups_core.model.predictor import TENSORRT_INSTALL_HINT, load_predictor

TINY = Path(__file__).resolve().parents[3] / "config" / "model" / "tiny.yaml"


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


def test_engine_cache_path_is_keyed_by_model_gpu_version_precision_and_size(
    tmp_path: Path,
) -> None:
    path = engine_cache_path(
        512,
        1024,
        model_id="vcups_r50-0123abcd",
        gpu_name="NVIDIA H100 80GB HBM3",
        trt_version="10.3.0",
        cache_dir=tmp_path,
    )
    assert (
        path == tmp_path / "vcups_r50-0123abcd-nvidia_h100_80gb_hbm3-trt10.3.0-fp32-512x1024.engine"
    )
    default = engine_cache_path(
        64, 96, model_id="m/x y", fp16=True, gpu_name="RTX 4090", trt_version="10.0.1"
    )
    assert (
        default
        == Path("~/.cache/vcups/engines/m_x_y-rtx_4090-trt10.0.1-fp16-64x96.engine").expanduser()
    )
    _require_no_tensorrt()
    with pytest.raises(ImportError, match="tensorrt-cu12"):
        engine_cache_path(64, 96, model_id="m", gpu_name="RTX 4090")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_config(TINY, ModelConfig)).eval()
    return export_onnx(model, tmp_path_factory.mktemp("trt") / "tiny.onnx", example_size=(64, 96))


def test_cached_engine_reuses_the_cache_and_builds_only_on_a_miss(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    """A cached engine is returned as it is (no TensorRT needed to use it); a miss builds, which
    without TensorRT is the install hint and nothing written. The key follows the weights."""
    model_id = onnx_model_id(tiny_onnx)
    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    checksum = meta["vcups_weights_sha256"]
    assert model_id == f"vcups_tiny-{checksum[:16]}"
    key = {"gpu_name": "NVIDIA H200", "trt_version": "10.9.0", "cache_dir": tmp_path}
    hit = engine_cache_path(640, 1280, model_id=model_id, **key)
    hit.write_bytes(b"an engine built before")
    assert cached_engine(tiny_onnx, **key) == hit
    assert hit.read_bytes() == b"an engine built before"
    _require_no_tensorrt()
    with pytest.raises(ImportError, match="tensorrt-cu12"):
        cached_engine(tiny_onnx, fp16=True, **key)  # the fp16 engine is not cached yet
    assert sorted(p.name for p in tmp_path.iterdir()) == [hit.name]
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        cached_engine(tmp_path / "missing.onnx", **key)
    with pytest.raises(ImportError, match="tensorrt-cu12"):
        load_predictor(tiny_onnx, backend="tensorrt", engine_cache_dir=tmp_path / "empty")
