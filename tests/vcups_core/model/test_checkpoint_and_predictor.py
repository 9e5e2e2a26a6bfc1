"""Checkpoint round trip, refusal of code-executing pickles, the Predictor contract, and the
torch predictor driving the streaming segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import tiny_config

from vcups_core.config import config_to_dict, render_yaml
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.export.trt_module import TENSORRT_INSTALL_HINT
from vcups_core.model.build import build_model
from vcups_core.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from vcups_core.model.predictors import Predictor, load_predictor
from vcups_core.model.predictors.tensorrt_predictor import TensorRTPredictor
from vcups_core.model.predictors.torch_predictor import TorchPredictor, image_to_tensor
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.streaming.smoother import SemanticSmoother
from vcups_core.streaming.tracker import OnlineTracker
from vcups_core.types import CategoryTable, FramePrediction, VideoFrame

CATEGORIES = CategoryTable(
    names=("car", "person", "bike", "bus", "truck", *(f"stuff_{j}" for j in range(22))),
    num_things=5,
    pseudo_class_ids=tuple(range(100, 127)),
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model(tiny_config(inference={"score_threshold": 0.0}), CATEGORIES).eval()
    path = save_checkpoint(
        model, tmp_path_factory.mktemp("ckpt") / "sub" / "tiny.pt", extra={"step": 7}
    )
    return model, path


def _image(h: int = 80, w: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_round_trip_gives_the_same_predictions_and_metadata(
    saved: tuple[torch.nn.Module, Path],
) -> None:
    model, path = saved
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta["format_version"] == 1
    assert meta["model_name"] == "vcups_tiny"
    assert meta["categories"]["names"][:2] == ["car", "person"]
    assert meta["categories"]["pseudo_class_ids"][0] == 100
    assert meta["thing_stuff"] == {"num_things": 5, "num_stuff": 22}
    assert meta["normalization"]["pixel_mean"] == [0.485, 0.456, 0.406]
    assert meta["model_config"] == config_to_dict(model.config)
    assert meta["torch_version"] == torch.__version__
    assert len(meta["weights_sha256"]) == 64
    assert meta["extra"] == {"step": 7}
    assert loaded.categories == CATEGORIES
    images = [torch.rand(3, 80, 112), torch.rand(3, 64, 64)]
    for a, b in zip(model.predict(images), loaded.predict(images), strict=True):
        assert len(a) > 0
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.masks.to_dense(), b.masks.to_dense())
        np.testing.assert_array_equal(a.panoptic_instance, b.panoptic_instance)
        np.testing.assert_array_equal(a.semantic_probs, b.semantic_probs)
        np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_a_config_override_changes_inference_settings(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    strict = tiny_config(inference={"score_threshold": 1.0})
    loaded, _ = load_checkpoint(path, config=strict)
    assert len(loaded.predict([torch.rand(3, 64, 64)])[0]) == 0
    with pytest.raises(ValueError, match="do not fit"):
        load_checkpoint(path, config=tiny_config(cascade={"fc_dim": 128}))


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickles_that_need_code_execution_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "vcups-checkpoint", "metadata": {}, "state_dict": {}, "x": Evil()}, path)
    with pytest.raises(
        ValueError,
        match=r"evil\.pt needs pickle code execution to load; refusing; re-save it with vcups",
    ):
        load_checkpoint(path)


def test_corrupted_or_foreign_files_are_refused(
    saved: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    _, path = saved
    state, meta = read_checkpoint(path)
    state = dict(state)
    key = next(iter(state))
    state[key] = state[key] + 1
    edited = tmp_path / "edited.pt"
    torch.save({"format": "vcups-checkpoint", "metadata": meta, "state_dict": state}, edited)
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(edited)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    with pytest.raises(ValueError, match="not a vcups checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_torch_predictor_satisfies_the_predictor_contract(
    saved: tuple[torch.nn.Module, Path],
) -> None:
    model, path = saved
    predictor = TorchPredictor(model)
    assert isinstance(predictor, Predictor)
    assert predictor.categories == CATEGORIES
    assert predictor.model_name == "vcups_tiny"
    _, meta = read_checkpoint(path)
    assert predictor.checksum == meta["weights_sha256"]
    pred = predictor.predict(_image(75, 101))
    assert isinstance(pred, FramePrediction)
    assert (pred.height, pred.width) == (75, 101)
    assert 0 < len(pred) <= 20
    assert pred.masks.shape == (len(pred), 75, 101)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(_image().astype(np.float32))
    with pytest.raises(ValueError, match="CUDA"):
        TorchPredictor(model, half=True)
    via_file = load_predictor(PredictorConfig(checkpoint=str(path), backend="torch"))
    assert via_file.checksum == predictor.checksum
    np.testing.assert_array_equal(
        via_file.predict(_image()).boxes, predictor.predict(_image()).boxes
    )
    with pytest.raises(ValueError, match="backend"):
        load_predictor(PredictorConfig(checkpoint=str(path), backend="tflite"))  # type: ignore[arg-type]


def test_load_predictor_takes_every_model_setting(
    saved: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    """``config`` (another model config: here other inference thresholds) and ``half`` reach the
    torch backend; an empty or missing checkpoint is a one-line error naming the setting."""
    _, path = saved
    strict = tmp_path / "strict.yaml"
    strict.write_text(render_yaml(tiny_config(inference={"score_threshold": 1.0})))
    rebuilt = load_predictor(PredictorConfig(checkpoint=str(path), config=str(strict)))
    assert rebuilt.settings.score_threshold == 1.0  # type: ignore[attr-defined]
    assert len(rebuilt.predict(_image())) == 0
    with pytest.raises(ValueError, match="half=True needs a CUDA device"):
        load_predictor(PredictorConfig(checkpoint=str(path), half=True))
    with pytest.raises(ValueError, match=r"^model\.checkpoint is empty"):
        load_predictor(PredictorConfig())
    with pytest.raises(FileNotFoundError, match=r"model.checkpoint .*missing\.pt: no such file"):
        load_predictor(PredictorConfig(checkpoint=str(tmp_path / "missing.pt")))


def test_image_to_tensor_on_the_cpu_and_off_it() -> None:
    """The CPU branch is ``image_to_chw`` (values hand-checked); the accelerator branch, which
    copies uint8 and converts on the device, is run on torch's ``meta`` device here: it must
    give a contiguous ``float32[3, H, W]`` (its values are compared with the CPU's on a GPU by
    ``benchmarks/bench_gpu.py``)."""
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 1] = (255, 0, 51)  # pixel (y=0, x=1): R, G, B
    cpu = image_to_tensor(image, torch.device("cpu"))
    assert cpu.dtype == torch.float32 and tuple(cpu.shape) == (3, 2, 3)
    assert cpu[:, 0, 1].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert float(cpu.sum()) == pytest.approx(1.2)
    on_device = image_to_tensor(image, torch.device("meta"))
    assert on_device.device.type == "meta" and on_device.dtype == torch.float32
    assert tuple(on_device.shape) == (3, 2, 3) and on_device.is_contiguous()
    for bad in (image.astype(np.float32), image[..., :2], image[0]):
        for device in ("cpu", "meta"):
            with pytest.raises(ValueError, match=r"uint8\[H, W, 3\]"):
                image_to_tensor(bad, torch.device(device))


def test_torch_predictor_drives_the_streaming_segmenter(
    saved: tuple[torch.nn.Module, Path],
) -> None:
    """The real post-processing's output (mask crops, semantics on the 4-pixel grid) through
    ``StreamingSegmenter.step``: each detection's pixels lie in its mask region (what the
    composition relies on), every segment id of the map is in the table with its exact area."""
    model, _ = saved
    seg = StreamingSegmenter(
        TorchPredictor(model),
        tracker=OnlineTracker(),
        smoother=SemanticSmoother(),
        score_threshold=0.0,  # random weights: keep every detection
        stuff_area_limit=0,
    )
    things = 0
    for t in range(3):
        image = _image(75, 101, seed=t)
        pred = seg.predictor.predict(image)
        for k, (x0, y0, x1, y1) in enumerate(pred.masks.regions.tolist()):
            ys, xs = np.nonzero(pred.panoptic_instance == k + 1)
            if len(ys):
                assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        frame = seg.step(VideoFrame(image, 1_000 + 100 * t, "cam", t))
        assert frame.segment_ids.shape == (75, 101) and frame.stamp_ns == 1_000 + 100 * t
        ids, counts = np.unique(frame.segment_ids, return_counts=True)
        areas = {s.segment_id: s.area for s in frame.segments}
        assert {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i} == areas
        things += sum(s.is_thing for s in frame.segments)
    assert things > 0


@pytest.mark.usefixtures("no_tensorrt")
def test_tensorrt_predictor_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ImportError) as info:
        TensorRTPredictor(tmp_path / "model.engine", CATEGORIES)
    message = str(info.value)
    assert message == TENSORRT_INSTALL_HINT
    assert "pip install tensorrt-cu13" in message and "https://pypi.nvidia.com" in message
    assert "GPU" in message
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"an engine")
    with pytest.raises(ImportError, match="tensorrt-cu13"):
        load_predictor(PredictorConfig(checkpoint=str(engine), backend="tensorrt", device="cuda"))
