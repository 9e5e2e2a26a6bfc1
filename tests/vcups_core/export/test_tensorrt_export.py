"""TensorRT: honest failure without the package, the engine cache, and ``build_engine``'s own
logic against a recording stand-in for the ``tensorrt`` module (no GPU or TensorRT here)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnx
import pytest
import torch

import vcups_core.export.tensorrt as tensorrt_export
from vcups_core.config import load_config
from vcups_core.configs.model import ModelConfig
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.export.onnx import export_onnx
from vcups_core.export.tensorrt import build_engine
from vcups_core.export.trt_module import TENSORRT_INSTALL_HINT
from vcups_core.model.build import build_model
from vcups_core.model.predictors import load_predictor
from vcups_core.model.predictors.engine_cache import (
    cached_engine,
    engine_cache_path,
    onnx_model_id,
)

TINY = Path(__file__).resolve().parents[3] / "config" / "model" / "tiny.yaml"


@pytest.mark.usefixtures("no_tensorrt")
def test_build_engine_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ImportError) as info:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", fp16=True)
    assert str(info.value) == TENSORRT_INSTALL_HINT
    assert "pip install tensorrt-cu13" in str(info.value)
    assert "https://pypi.nvidia.com" in str(info.value)
    assert not (tmp_path / "model.engine").exists()


@pytest.mark.usefixtures("no_tensorrt")
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
    with pytest.raises(ImportError, match="tensorrt-cu13"):
        engine_cache_path(64, 96, model_id="m", gpu_name="RTX 4090")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_config(TINY, ModelConfig)).eval()
    return export_onnx(model, tmp_path_factory.mktemp("trt") / "tiny.onnx", example_size=(64, 96))


@pytest.mark.usefixtures("no_tensorrt")
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
    with pytest.raises(ImportError, match="tensorrt-cu13"):
        cached_engine(tiny_onnx, fp16=True, **key)  # the fp16 engine is not cached yet
    assert sorted(p.name for p in tmp_path.iterdir()) == [hit.name]
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        cached_engine(tmp_path / "missing.onnx", **key)
    with pytest.raises(ImportError, match="tensorrt-cu13"):
        load_predictor(
            PredictorConfig(
                checkpoint=str(tiny_onnx),
                backend="tensorrt",
                engine_cache_dir=str(tmp_path / "empty"),
            )
        )


def fake_tensorrt(
    version: str, *, has_fp16: bool, parse_ok: bool = True
) -> tuple[Any, list[tuple[Any, ...]]]:
    """A stand-in for the ``tensorrt`` module with only the calls :func:`build_engine` makes,
    recording them. It tests build_engine's own logic (the precision guard, the profile, the
    files written, the cache); the real TensorRT API is not exercised by it. ``has_fp16=False``
    is TensorRT 11, which removed ``BuilderFlag.FP16`` (checked in the 11.4 bindings)."""
    calls: list[tuple[Any, ...]] = []

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            pass

    class Network:
        def get_input(self, index: int) -> Any:
            return SimpleNamespace(name="image")

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse", Path(path).name))
            return parse_ok

        def get_error(self, index: int) -> str:
            return "node 7 (RoiAlign): unsupported attribute"

    class Profile:
        def set_shape(self, name: str, *shapes: tuple[int, ...]) -> None:
            calls.append(("profile", name, *shapes))

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("pool", pool, size))

        def set_flag(self, flag: str) -> None:
            calls.append(("flag", flag))

        def add_optimization_profile(self, profile: Profile) -> None:
            pass

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("builder",))

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calls.append(("build",))
            return b"serialized engine"

    flags = {"TF32": "TF32", **({"FP16": "FP16"} if has_fp16 else {})}
    module = SimpleNamespace(
        __version__=version,
        Logger=Logger,
        Builder=Builder,
        OnnxParser=Parser,
        BuilderFlag=SimpleNamespace(**flags),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
    )
    return module, calls


def test_build_engine_fp16_on_tensorrt_10_sets_the_flag_and_writes_engine_and_sidecar(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt, calls = fake_tensorrt("10.16.1.11", has_fp16=True)
    monkeypatch.setattr(tensorrt_export, "import_tensorrt", lambda: trt)
    out = build_engine(tiny_onnx, tmp_path / "e" / "tiny.engine", fp16=True, workspace_gb=0.5)
    assert out == tmp_path / "e" / "tiny.engine" and out.read_bytes() == b"serialized engine"
    assert calls == [
        ("builder",),
        ("parse", "tiny.onnx"),
        ("pool", "WORKSPACE", 1 << 29),
        ("flag", "FP16"),
        ("profile", "image", (3, 256, 256), (3, 640, 1280), (3, 1024, 2048)),
        ("build",),
    ]
    sidecar = json.loads((tmp_path / "e" / "tiny.engine.json").read_text())
    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert sidecar == {k: v for k, v in meta.items() if k.startswith("vcups_")}
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["tiny.engine", "tiny.engine.json"]


def test_build_engine_fp16_on_tensorrt_11_says_why_before_any_work(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt, calls = fake_tensorrt("11.4.0.106", has_fp16=False)
    monkeypatch.setattr(tensorrt_export, "import_tensorrt", lambda: trt)
    with pytest.raises(RuntimeError, match=r"TensorRT 11\.4\.0\.106.*model\.half: false"):
        build_engine(tiny_onnx, tmp_path / "tiny.engine", fp16=True)
    assert calls == [] and list(tmp_path.iterdir()) == []
    out = build_engine(tiny_onnx, tmp_path / "tiny.engine")  # fp32 builds, with no flag
    assert out.read_bytes() == b"serialized engine"
    assert ("flag", "FP16") not in calls and ("build",) in calls


def test_build_engine_reports_parser_errors_and_writes_nothing(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt, _ = fake_tensorrt("10.16.1.11", has_fp16=True, parse_ok=False)
    monkeypatch.setattr(tensorrt_export, "import_tensorrt", lambda: trt)
    with pytest.raises(RuntimeError, match=r"could not parse .*tiny\.onnx:\nnode 7 \(RoiAlign\)"):
        build_engine(tiny_onnx, tmp_path / "tiny.engine")
    assert list(tmp_path.iterdir()) == []


def test_cached_engine_builds_on_a_miss_then_reuses_under_the_tensorrt_version_key(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt, calls = fake_tensorrt("11.4.0.106", has_fp16=False)
    monkeypatch.setattr(tensorrt_export, "import_tensorrt", lambda: trt)
    first = cached_engine(tiny_onnx, cache_dir=tmp_path, gpu_name="NVIDIA H200")
    assert (
        first.name == f"{onnx_model_id(tiny_onnx)}-nvidia_h200-trt11.4.0.106-fp32-640x1280.engine"
    )
    assert calls.count(("build",)) == 1
    assert cached_engine(tiny_onnx, cache_dir=tmp_path, gpu_name="NVIDIA H200") == first
    assert calls.count(("build",)) == 1  # the second call found it
