"""Backbone weights in torchvision and detectron2 (CutLER/U2Seg/CUPS) layouts."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from vcups_core.model.weights import (
    detectron2_to_torchvision_key,
    load_backbone_weights,
    read_pickle_arrays,
)


def _to_detectron2(key: str) -> str:
    """torchvision ResNet name -> detectron2 name, written independently of the library."""
    key = re.sub(r"^conv1\.", "stem.conv1.", key)
    key = re.sub(r"^bn1\.", "stem.conv1.norm.", key)
    m = re.match(r"layer(\d)\.(\d+)\.(.*)", key)
    if m:
        stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
        rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
        rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
        rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
        key = f"res{stage}.{block}.{rest}"
    return key


@pytest.fixture
def reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = resnet18(weights=None)
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def _check_loaded(target: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = target.state_dict()
    for key, value in reference.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_detectron2_pkl_and_pth_load_into_a_torchvision_resnet(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    d2 = {"backbone.bottom_up." + _to_detectron2(k): v.numpy() for k, v in reference.items()}
    assert "backbone.bottom_up.res2.0.conv1.norm.running_var" in d2
    assert "backbone.bottom_up.res3.0.shortcut.norm.weight" in d2
    d2 = {k: v for k, v in d2.items() if ".fc." not in k}
    d2["backbone.bottom_up.stem.fc_extra.weight"] = np.zeros(3, np.float32)  # unexpected
    pkl = tmp_path / "dino_r18_d2.pkl"
    with pkl.open("wb") as f:
        pickle.dump({"model": d2, "__author__": "test", "matching_heuristics": True}, f, protocol=2)
    pth = tmp_path / "dino_r18_d2.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in d2.items()}}, pth)

    for path in (pkl, pth):
        target = resnet18(weights=None)
        report = load_backbone_weights(target, path)
        assert report.layout == "detectron2"
        assert report.unexpected == ["stem.fc_extra.weight"]
        assert report.missing == ["fc.weight", "fc.bias"]  # the classifier is not in d2 files
        assert not report.mismatched
        assert len(report.loaded) == len([k for k in reference if not k.startswith("fc.")])
        _check_loaded(target, reference)

    # Without the classifier (as inside the detector's backbone body) nothing is missing.
    body = resnet18(weights=None)
    del body.fc
    report = load_backbone_weights(body, pkl)
    assert report.missing == [] and report.unexpected == ["stem.fc_extra.weight"]


def test_torchvision_layout_pth(tmp_path: Path, reference: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "r18.pth"
    torch.save(reference, path)
    target = resnet18(weights=None)
    report = load_backbone_weights(target, path)
    assert report.layout == "torchvision" and report.complete
    _check_loaded(target, reference)
    # A wrong-shaped tensor is reported, not loaded.
    bad = dict(reference)
    bad["layer1.0.conv1.weight"] = torch.zeros(1)
    torch.save(bad, path)
    report = load_backbone_weights(resnet18(weights=None), path)
    assert len(report.mismatched) == 1 and report.mismatched[0].startswith("layer1.0.conv1.weight")
    assert "layer1.0.conv1.weight" not in report.missing  # reported once, as mismatched


def test_key_mapping() -> None:
    assert detectron2_to_torchvision_key("stem.conv1.weight") == "conv1.weight"
    assert detectron2_to_torchvision_key("stem.conv1.norm.running_mean") == "bn1.running_mean"
    assert detectron2_to_torchvision_key("res2.0.conv3.norm.bias") == "layer1.0.bn3.bias"
    assert detectron2_to_torchvision_key("res5.2.conv2.weight") == "layer4.2.conv2.weight"
    assert detectron2_to_torchvision_key("res3.0.shortcut.weight") == "layer2.0.downsample.0.weight"
    assert (
        detectron2_to_torchvision_key("res4.0.shortcut.norm.running_var")
        == "layer3.0.downsample.1.running_var"
    )


class Payload:
    """A class a malicious pickle would need to import (never instantiated on load)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would run code",))


def test_pickles_needing_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    with path.open("wb") as f:
        pickle.dump({"model": {"stem.conv1.weight": np.zeros(1)}, "x": Payload()}, f)
    with pytest.raises(ValueError, match="needs pickle code execution"):
        read_pickle_arrays(path)
    with pytest.raises(ValueError, match="needs pickle code execution"):
        load_backbone_weights(resnet18(weights=None), path)
    # numpy arrays pickled with the newest protocol are fine.
    ok = tmp_path / "ok.pkl"
    with ok.open("wb") as f:
        pickle.dump({"a": np.arange(3.0), "b": np.float32(2.5)}, f, protocol=5)
    data = read_pickle_arrays(ok)
    np.testing.assert_array_equal(data["a"], [0.0, 1.0, 2.0])
