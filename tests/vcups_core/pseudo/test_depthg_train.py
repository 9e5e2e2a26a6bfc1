"""Training the DepthG head on a tiny synthetic clip: the loss goes down, the model file loads,
and a run interrupted and resumed gives exactly the model of an uninterrupted one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from depthg_utils import one_torch_thread, write_tiny_vit
from pseudo_fakes import native_config

from vcups_core.cues.depthg import DepthGHead, DepthGModel, depthg_losses, load_backbone
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.pseudo.depthg_train import (
    DepthGTrainOptions,
    FrameStore,
    make_batch,
    nearest_neighbours,
    train_depthg,
)
from vcups_core.pseudo.sources import SourceSpec


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


CLASSES = 5
OPTIONS = DepthGTrainOptions(
    steps=6,
    batch_size=3,
    lr=5e-3,
    res=32,
    code_dim=8,
    checkpoint_every=2,
    log_every=1,
    probe_samples=64,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-frame 128x256 synthetic drive (parallax depth needs this much image to triangulate)."""
    folder = tmp_path_factory.mktemp("clip") / "drive"
    folder.mkdir()
    for frame in SyntheticWorld(height=128, width=256, num_frames=4, seed=0).frames():
        assert cv2.imwrite(str(folder / f"{frame.index:05d}.png"), frame.rgb[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_vit(tmp_path_factory.mktemp("weights") / "vit.pth")


def config() -> Any:
    return native_config(semantics={"num_classes": CLASSES, "crop_size": 64, "stride": 32})


def train(clip: Path, vit: Path, out: Path, **kwargs: Any) -> DepthGModel:
    kwargs.setdefault("options", OPTIONS)
    return train_depthg(
        SourceSpec.frames([clip]), out, config(), backbone_weights=vit, progress=False, **kwargs
    )


def mean_loss(head: DepthGHead, files: list[Path], vit: Path) -> float:
    """The loss of ``head`` on 4 fixed batches (fixed crops and points; eval mode)."""
    backbone = load_backbone(vit)
    frames = FrameStore(files)
    knn = nearest_neighbours(files, backbone, 32, 7, torch.device("cpu"))
    gen = torch.Generator().manual_seed(123)
    head.eval()
    total = 0.0
    with torch.no_grad():
        for _ in range(4):
            batch = make_batch(frames, knn, 4, 32, gen, torch.device("cpu"))
            feats = backbone(torch.cat([batch.images, batch.partners]))
            code = head(feats)
            terms = depthg_losses(
                feats[:4], feats[4:], code[:4], code[4:], batch.depth, OPTIONS.weights, gen
            )
            total += float(terms["total"])
    return total / 4


def test_training_lowers_the_loss_and_writes_a_model_that_loads(
    tmp_path: Path, clip: Path, vit: Path
) -> None:
    out = tmp_path / "depthg.pt"
    steps: list[int] = []
    options = dataclasses.replace(OPTIONS, steps=30, checkpoint_every=10)
    model = train(clip, vit, out, options=options, on_step=lambda s, _: steps.append(s))
    assert steps == list(range(1, 31))
    work = tmp_path / "depthg.pt.work"
    files = sorted((work / "frames").glob("*.npz"))
    assert len(files) == 4
    with np.load(files[0]) as cached:
        assert cached["image"].shape == (64, 128, 3)  # a 32 px crop = half the short side
        assert np.isfinite(cached["depth"]).mean() > 0.2  # the parallax depth cue
    assert list((work / "tensorboard").glob("events.out.tfevents.*"))
    torch.manual_seed(OPTIONS.seed)  # the head before training (same seed, same construction)
    initial = DepthGHead(192, OPTIONS.code_dim)
    assert mean_loss(model.head, files, vit) < mean_loss(initial, files, vit) - 0.01
    loaded = DepthGModel.load(out)
    assert loaded.num_classes == CLASSES and (loaded.crop, loaded.stride) == (64, 32)
    assert loaded.info["steps"] == 30 and set(loaded.info["losses"]) >= {"depth", "total"}
    image = cv2.imread(str(clip / "00001.png"))[:, :, ::-1].copy()
    logp = loaded.log_proba(image)
    assert logp.shape == (CLASSES, 128, 256)
    np.testing.assert_array_equal(logp, model.log_proba(image))


def test_an_interrupted_run_resumes_to_the_same_model(
    tmp_path: Path, clip: Path, vit: Path
) -> None:
    whole = train(clip, vit, tmp_path / "whole.pt")

    def stop_at_5(step: int, _: dict[str, float]) -> None:
        if step == 5:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.pt"
    with pytest.raises(KeyboardInterrupt):
        train(clip, vit, out, on_step=stop_at_5)
    assert not out.exists()
    state = torch.load(tmp_path / "resumed.pt.work" / "state.pt", weights_only=True)
    assert state["step"] == 4  # the last checkpoint before the interruption
    steps: list[int] = []
    pipelines: list[object] = []

    def counting_cues(cfg: Any) -> object:
        from vcups_core.cues.build import build_cue_pipeline

        pipelines.append(cfg)
        return build_cue_pipeline(cfg)

    resumed = train(clip, vit, out, on_step=lambda s, _: steps.append(s), cue_factory=counting_cues)
    assert steps == [5, 6]  # continued from the saved step
    assert pipelines == []  # the cached frames and depth were reused
    for key, value in whole.head.state_dict().items():
        assert torch.equal(resumed.head.state_dict()[key], value), key
    np.testing.assert_array_equal(resumed.centroids, whole.centroids)
    # a finished run is not trained again; a larger --steps continues it
    steps.clear()
    train(clip, vit, out, on_step=lambda s, _: steps.append(s))
    assert steps == []
    train(
        clip,
        vit,
        out,
        options=dataclasses.replace(OPTIONS, steps=7),
        on_step=lambda s, _: steps.append(s),
    )
    assert steps == [7]
    with pytest.raises(ValueError, match=r"other settings \(batch_size differ\)"):
        train(clip, vit, out, options=dataclasses.replace(OPTIONS, batch_size=2))


def test_option_and_path_errors(tmp_path: Path, clip: Path, vit: Path) -> None:
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train(clip, vit, tmp_path / "a.pt", options=dataclasses.replace(OPTIONS, steps=0))
    with pytest.raises(ValueError, match="not a multiple of the backbone's stride 16"):
        train(clip, vit, tmp_path / "a.pt", options=dataclasses.replace(OPTIONS, res=40))
    with pytest.raises(FileNotFoundError, match="output folder"):
        train(clip, vit, tmp_path / "no" / "a.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        train(clip, tmp_path / "missing.pth", tmp_path / "a.pt")
