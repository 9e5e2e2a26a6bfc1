"""Depth and motion networks from TorchScript and ONNX files: contracts, parity, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vcups_core.cues.base import FrameCues
from vcups_core.cues.networks import NetworkDepth, NetworkMotion, open_network
from vcups_core.types import VideoFrame

H, W = 12, 16


class _Depth(nn.Module):
    """depth = 1 + R + G + B (RGB in [0, 1]): [1, 1, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + x.sum(dim=1, keepdim=True)


class _SignedDepth(nn.Module):
    """depth = R - 0.5: negative where the red channel is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] - 0.5


class _HalfDepth(nn.Module):
    """depth at half resolution, rank 2: [H / 2, W / 2]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(1.0 + x[:, :1], 2)[0, 0]


class _Motion(nn.Module):
    """score = 2 * mean(partner - frame) over RGB: [1, H, W] (rank 3); order-sensitive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * (x[:, 3:] - x[:, :3]).mean(dim=1)


class _ThreeChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3]


def _frame(rgb: tuple[int, int, int], index: int = 0, size: tuple[int, int] = (H, W)) -> VideoFrame:
    image = np.empty((*size, 3), np.uint8)
    image[:] = rgb
    return VideoFrame(image, stamp_ns=0, index=index)


def _cues(frame: VideoFrame, partner: VideoFrame | None = None) -> FrameCues:
    h, w = frame.height, frame.width
    return FrameCues(
        frame=frame,
        partner=partner if partner is not None else frame,
        intrinsics=np.eye(3),
        flow=np.zeros((h, w, 2), np.float32),
        flow_is_forward=True,
        flow_back=np.zeros((h, w, 2), np.float32),
    )


def _torchscript(module: nn.Module, path: Path, channels: int, *, trace: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in recent torch
        if trace:
            scripted = torch.jit.trace(module, torch.zeros(1, channels, H, W))
        else:
            scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path))
    return path


def _onnx(
    module: nn.Module,
    path: Path,
    channels: int,
    *,
    dynamic: bool = True,
    size: tuple[int, int] = (H, W),
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, channels, *size),),
            str(path),
            input_names=["image"],
            output_names=["out"],
            dynamic_axes={"image": {2: "h", 3: "w"}} if dynamic else None,
            dynamo=False,
        )
    return path


@pytest.fixture(params=["script", "trace", "onnx"])
def depth_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "onnx":
        return _onnx(_Depth(), tmp_path / "depth.onnx", 3)
    return _torchscript(_Depth(), tmp_path / "depth.pt", 3, trace=request.param == "trace")


def test_network_depth_contract(depth_file: Path) -> None:
    depth_net = NetworkDepth(depth_file)
    assert depth_net.name == f"network:{depth_file.name}"
    depth = depth_net(_cues(_frame((255, 0, 51))))
    assert depth.shape == (H, W) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, 1.0 + 1.0 + 0.0 + 0.2, rtol=1e-6)  # 51 / 255 = 0.2


def test_torchscript_and_onnx_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    partner = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cues = _cues(VideoFrame(image, 0, index=0), VideoFrame(partner, 0, index=1))
    d_ts = NetworkDepth(_torchscript(_Depth(), tmp_path / "d.ts", 3))(cues)
    d_onnx = NetworkDepth(_onnx(_Depth(), tmp_path / "d.onnx", 3))(cues)
    np.testing.assert_allclose(d_ts, d_onnx, rtol=1e-6)
    np.testing.assert_allclose(d_ts, 1.0 + image.astype(np.float32).sum(axis=2) / 255.0, rtol=1e-5)
    m_ts, ego_ts = NetworkMotion(_torchscript(_Motion(), tmp_path / "m.torchscript", 6))(cues)
    m_onnx, ego_onnx = NetworkMotion(_onnx(_Motion(), tmp_path / "m.onnx", 6))(cues)
    assert ego_ts is None and ego_onnx is None
    np.testing.assert_allclose(m_ts, m_onnx, atol=1e-6)
    expected = np.clip(2 * (partner / 255.0 - image / 255.0).mean(axis=2), 0, 1)
    np.testing.assert_allclose(m_ts, expected, atol=1e-5)


def test_network_motion_stacks_frame_and_partner_and_clips(tmp_path: Path) -> None:
    frame = _frame((0, 0, 0), index=3)
    partner_img = np.zeros((H, W, 3), np.uint8)
    partner_img[2:5, 4:8] = 255  # differs by 1 per channel: 2 * 1 = 2, clipped to 1
    partner_img[8, 1] = (51, 51, 51)  # 2 * 0.2 = 0.4
    partner = VideoFrame(partner_img, 0, index=4)
    motion = NetworkMotion(_onnx(_Motion(), tmp_path / "motion.onnx", 6))
    score, ego = motion(_cues(frame, partner))
    assert ego is None
    assert score.shape == (H, W) and score.dtype == np.float32
    expected = np.zeros((H, W), np.float32)
    expected[2:5, 4:8] = 1.0
    expected[8, 1] = 0.4
    np.testing.assert_allclose(score, expected, atol=1e-6)
    with pytest.raises(ValueError, match="differ in size"):
        motion(_cues(frame, _frame((0, 0, 0), 4, size=(H, W + 8))))


def test_non_positive_depth_becomes_nan(tmp_path: Path) -> None:
    image = np.zeros((H, W, 3), np.uint8)
    image[:, W // 2 :, 0] = 255  # right half: R - 0.5 = 0.5; left half: -0.5
    net = NetworkDepth(_onnx(_SignedDepth(), tmp_path / "signed.onnx", 3))
    depth = net(_cues(VideoFrame(image, 0)))
    assert np.isnan(depth[:, : W // 2]).all()
    np.testing.assert_allclose(depth[:, W // 2 :], 0.5)


def test_smaller_output_is_resized_bilinearly(tmp_path: Path) -> None:
    net = NetworkDepth(_torchscript(_HalfDepth(), tmp_path / "half.pt", 3))
    depth = net(_cues(_frame((102, 0, 0))))  # 1 + 0.4 everywhere, at H/2 x W/2
    assert depth.shape == (H, W)
    np.testing.assert_allclose(depth, 1.4, rtol=1e-6)


def test_fixed_size_onnx_graph_gets_a_resized_frame(tmp_path: Path) -> None:
    path = _onnx(_Depth(), tmp_path / "fixed.onnx", 3, dynamic=False, size=(8, 8))
    net = NetworkDepth(path)
    assert net.runner.input_size == (8, 8)
    depth = net(_cues(_frame((0, 255, 0))))  # 12 x 16 frame -> 8 x 8 graph -> back to 12 x 16
    assert depth.shape == (H, W)
    np.testing.assert_allclose(depth, 2.0, rtol=1e-6)


def test_wrong_output_rank_or_channels(tmp_path: Path) -> None:
    for path in (
        _torchscript(_ThreeChannels(), tmp_path / "three.pt", 3),
        _onnx(_ThreeChannels(), tmp_path / "three.onnx", 3),
    ):
        with pytest.raises(ValueError, match=rf"{path.name}.*\[1, 3, {H}, {W}\]"):
            NetworkDepth(path)(_cues(_frame((1, 2, 3))))


def test_wrong_input_channels_are_caught_at_load(tmp_path: Path) -> None:
    path = _onnx(_Depth(), tmp_path / "depth.onnx", 3)
    with pytest.raises(ValueError, match=r"depth\.onnx: expected input \[1, 6, H, W\]"):
        NetworkMotion(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        NetworkDepth(tmp_path / "missing.onnx")
    unknown = tmp_path / "depth.bin"
    unknown.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"depth\.bin: unknown extension '\.bin'"):
        NetworkDepth(unknown)
    state_dict = tmp_path / "weights.pt"
    torch.save(_Depth().state_dict(), state_dict)
    with pytest.raises(ValueError, match=r"weights\.pt: expected a TorchScript archive"):
        NetworkDepth(state_dict)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match=r"bad\.onnx: expected an ONNX graph"):
        open_network(bad_onnx)
