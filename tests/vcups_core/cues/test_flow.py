"""DIS and RAFT flow backends, the RAFT state-dict mapping, and warp."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small
from torchvision.models.optical_flow.raft import FeatureEncoder, ResidualBlock

from vcups_core.cues.flow import DISFlow, RAFTFlow, map_raft_state_dict, warp
from vcups_core.types import VideoFrame


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.5)
    return cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _frame(gray_or_rgb: np.ndarray, index: int) -> VideoFrame:
    img = gray_or_rgb if gray_or_rgb.ndim == 3 else np.repeat(gray_or_rgb[..., None], 3, axis=2)
    return VideoFrame(np.ascontiguousarray(img), stamp_ns=0, index=index)


def _shifted_pair(dx: int, dy: int) -> tuple[VideoFrame, VideoFrame]:
    """48x64 crops of one texture; the target shows the source moved by (dx, dy)."""
    tex = _texture(80, 96)
    source = tex[16:64, 16:80]
    target = tex[16 - dy : 64 - dy, 16 - dx : 80 - dx]  # target(y + dy, x + dx) = source(y, x)
    return _frame(source, 0), _frame(target, 1)


# ------------------------------------------------------------------------------------------
# DIS


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_recovers_integer_translation(preset: str) -> None:
    source, target = _shifted_pair(dx=3, dy=2)
    flow = DISFlow(preset)(source, target)
    assert flow.shape == (48, 64, 2)
    assert flow.dtype == np.float32
    interior = flow[8:-8, 8:-8].reshape(-1, 2)
    err = np.linalg.norm(interior - np.array([3.0, 2.0]), axis=1)
    assert np.median(err) < 0.1
    assert np.mean(err < 0.5) > 0.95


def test_dis_flow_of_identical_frames_is_zero() -> None:
    source, _ = _shifted_pair(0, 0)
    flow = DISFlow("fast")(source, source)
    assert np.abs(flow).max() < 0.05


def test_dis_name_errors_and_pickle() -> None:
    assert DISFlow().name == "dis:medium"
    assert DISFlow("ultrafast").name == "dis:ultrafast"
    with pytest.raises(ValueError, match="unknown DIS preset 'slow'"):
        DISFlow("slow")
    small = _frame(np.zeros((16, 16), np.uint8), 1)
    source, _ = _shifted_pair(0, 0)
    with pytest.raises(ValueError, match="same size"):
        DISFlow()(source, small)
    dis = DISFlow("fast")
    dis(source, source)  # creates the OpenCV object
    clone = pickle.loads(pickle.dumps(dis))
    assert clone.name == "dis:fast"
    np.testing.assert_array_equal(clone(source, source), dis(source, source))


# ------------------------------------------------------------------------------------------
# warp


def _ramp(h: int = 8, w: int = 10) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return (2.0 * xs + 10.0 * ys).astype(np.float32)


def test_warp_constant_flow_shifts_a_ramp() -> None:
    values = _ramp()  # v = 2x + 10y
    flow = np.zeros((8, 10, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.25, 0.5
    out = warp(values, flow)
    assert out.dtype == np.float32 and out.shape == (8, 10)
    # samples between pixel centres: exact bilinear on a ramp, v + 2 * 1.25 + 10 * 0.5
    np.testing.assert_allclose(out[:7, :8], values[:7, :8] + 7.5, atol=1e-4)
    # x + 1.25 = 9.25 lies in the last half pixel: the border value is replicated
    np.testing.assert_allclose(out[:7, 8], values[:7, 9] + 5.0, atol=1e-4)
    # x + 1.25 = 10.25 > W - 0.5: outside, filled with NaN
    assert np.isnan(out[:, 9]).all()
    assert np.isfinite(out[:, :9]).all()


def test_warp_fill_value_and_nan_flow() -> None:
    values = _ramp()
    flow = np.zeros((8, 10, 2), np.float32)
    flow[2, 3] = np.nan
    flow[0, 0] = (-1.0, 0.0)  # x = -1 < -0.5
    out = warp(values, flow, fill=-7.0)
    assert out[2, 3] == -7.0 and out[0, 0] == -7.0
    mask = np.ones((8, 10), bool)
    mask[2, 3] = mask[0, 0] = False
    np.testing.assert_array_equal(out[mask], values[mask])


def test_warp_nan_values_reach_only_samples_that_weigh_them() -> None:
    values = _ramp()
    values[2, 3] = np.nan
    flow = np.zeros((8, 10, 2), np.float32)
    flow[..., 0] = 0.5  # each sample is the mean of (y, x) and (y, x + 1)
    out = warp(values, flow)
    nan = np.isnan(out[:, :9])
    assert nan[2, 2] and nan[2, 3]
    assert nan.sum() == 2  # rows 1 and 3 give pixel (2, 3) zero weight
    np.testing.assert_allclose(out[2, 1], values[2, 1] + 1.0, atol=1e-4)
    # exact integer samples next to the NaN stay finite
    same = warp(values, np.zeros((8, 10, 2), np.float32))
    assert np.isnan(same).sum() == 1


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_warp_multichannel(channels: int) -> None:
    values = np.stack([_ramp() * (c + 1) for c in range(channels)], axis=2)
    flow = np.zeros((8, 10, 2), np.float32)
    flow[..., 0] = -0.5  # v(x - 0.5) = v - (c + 1)
    out = warp(values, flow)
    assert out.shape == (8, 10, channels)
    for c in range(channels):
        np.testing.assert_allclose(out[:, 1:, c], values[:, 1:, c] - (c + 1), atol=1e-4)
        # x = -0.5 is the image's left edge: inside, replicated
        np.testing.assert_allclose(out[:, 0, c], values[:, 0, c], atol=1e-4)


def test_warp_float64_keeps_dtype_and_ints_become_float32() -> None:
    flow = np.zeros((8, 10, 2), np.float32)
    assert warp(_ramp().astype(np.float64), flow).dtype == np.float64
    assert warp(np.ones((8, 10), np.uint8), flow).dtype == np.float32


def test_warp_nearest_keeps_integer_labels() -> None:
    labels = (np.arange(6 * 7, dtype=np.int64).reshape(6, 7) + 1) * 10**12  # beyond 32 bits
    flow = np.zeros((6, 7, 2), np.float32)
    flow[..., 0], flow[..., 1] = 0.6, -0.4  # nearest pixel: (x + 1, y)
    out = warp(labels, flow, nearest=True)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out[:, :6], labels[:, 1:])
    # x = 6.6 > 6.5 is outside: labels are filled with 0 (NaN fill means 0 for integers)
    np.testing.assert_array_equal(out[:, 6], 0)
    assert set(np.unique(out)) <= set(np.unique(labels)) | {0}
    # an explicit fill is kept
    assert (warp(labels, flow, nearest=True, fill=-1)[:, 6] == -1).all()


def test_warp_nearest_bool_and_multichannel() -> None:
    mask = np.zeros((6, 7), bool)
    mask[2, 3] = True
    flow = np.zeros((6, 7, 2), np.float32)
    flow[..., 1] = 1.0  # out[y] = mask[y + 1]
    out = warp(mask, flow, nearest=True)
    assert out.dtype == np.bool_
    assert out[1, 3] and out.sum() == 1
    stacked = np.stack([mask, ~mask], axis=2).astype(np.uint8)
    out2 = warp(stacked, flow, nearest=True)
    assert out2.shape == (6, 7, 2)
    np.testing.assert_array_equal(out2[:5], stacked[1:])
    np.testing.assert_array_equal(out2[5], 0)


def test_warp_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"flow must be \[H, W, 2\]"):
        warp(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="values must be"):
        warp(np.zeros((4, 5)), np.zeros((4, 4, 2)))


def test_warp_round_trip_with_dis_flow() -> None:
    """Warping the target with the estimated flow reproduces the source in the interior."""
    source, target = _shifted_pair(dx=3, dy=2)
    flow = DISFlow("medium")(source, target)
    back = warp(target.image[..., 0].astype(np.float32), flow)
    diff = np.abs(back[8:-8, 8:-8] - source.image[8:-8, 8:-8, 0].astype(np.float32))
    assert np.median(diff) < 2.0


# ------------------------------------------------------------------------------------------
# RAFT state dicts


def _original_name(key: str, small: bool) -> str:
    """torchvision → original princeton-vl/RAFT names, written out rule by rule."""
    rules = [
        (r"^feature_encoder\.", "fnet."),
        (r"^context_encoder\.", "cnet."),
        (r"^(fnet|cnet)\.convnormrelu\.0\.", r"\1.conv1."),
        (r"^(fnet|cnet)\.convnormrelu\.1\.", r"\1.norm1."),
        (r"^(fnet|cnet)\.conv\.", r"\1.conv2."),
        (r"\.convnormrelu(\d)\.0\.", r".conv\1."),
        (r"\.convnormrelu(\d)\.1\.", r".norm\1."),
        (r"^update_block\.motion_encoder\.convcorr(\d)\.0\.", r"update_block.encoder.convc\1."),
        (r"^update_block\.motion_encoder\.convflow(\d)\.0\.", r"update_block.encoder.convf\1."),
        (r"^update_block\.motion_encoder\.conv\.0\.", "update_block.encoder.conv."),
        (r"^mask_predictor\.convrelu\.0\.", "update_block.mask.0."),
        (r"^mask_predictor\.conv\.", "update_block.mask.2."),
    ]
    if small:
        rules.append(
            (r"^update_block\.recurrent_block\.convgru1\.conv(.)\.", r"update_block.gru.conv\1.")
        )
    else:
        rules.append(
            (
                r"^update_block\.recurrent_block\.convgru(\d)\.conv(.)\.",
                r"update_block.gru.conv\2\1.",
            )
        )
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _original_state(state: dict[str, torch.Tensor], small: bool) -> dict[str, torch.Tensor]:
    out = {_original_name(k, small): v for k, v in state.items()}
    # the original blocks register the downsample's norm a second time (norm3 / norm4)
    alias = "norm4" if small else "norm3"
    for k, v in state.items():
        m = re.match(r"^(feature|context)_encoder\.(layer\d\.\d)\.downsample\.1\.(.*)$", k)
        if m:
            enc = "fnet" if m.group(1) == "feature" else "cnet"
            out[f"{enc}.{m.group(2)}.{alias}.{m.group(3)}"] = v
    return out


def test_original_names_spot_check() -> None:
    """The test's inverse table agrees with the original RAFT code's names."""
    large = _original_state(raft_large().state_dict(), small=False)
    for name in (
        "fnet.conv1.weight",
        "cnet.norm1.running_mean",
        "cnet.layer2.0.conv1.weight",
        "cnet.layer2.0.norm3.running_var",
        "cnet.layer2.0.downsample.1.weight",
        "fnet.conv2.weight",
        "update_block.encoder.convc2.weight",
        "update_block.encoder.convf1.bias",
        "update_block.encoder.conv.weight",
        "update_block.gru.convz1.weight",
        "update_block.gru.convq2.bias",
        "update_block.flow_head.conv2.weight",
        "update_block.mask.0.weight",
        "update_block.mask.2.bias",
    ):
        assert name in large, name
    small = _original_state(raft_small().state_dict(), small=True)
    for name in ("fnet.layer1.0.conv3.weight", "update_block.gru.convr.weight"):
        assert name in small, name


@pytest.mark.parametrize("small", [True, False])
def test_map_original_state_dict_round_trip(small: bool) -> None:
    torch.manual_seed(0)
    model = raft_small() if small else raft_large()
    state = model.state_dict()
    original = _original_state(state, small)
    assert (
        "fnet.conv1.weight" in original and "feature_encoder.convnormrelu.0.weight" not in original
    )
    mapped = map_raft_state_dict(original, model)
    assert list(mapped) == list(state)
    for k, v in state.items():
        assert torch.equal(mapped[k], v), k
    # torchvision names pass through
    assert all(torch.equal(map_raft_state_dict(state, model)[k], v) for k, v in state.items())


def test_map_reports_missing_and_unexpected_keys_by_name() -> None:
    model = raft_small()
    original = _original_state(model.state_dict(), small=True)
    del original["update_block.flow_head.conv2.bias"]
    original["fnet.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"weights\.pth") as info:
        map_raft_state_dict(original, model, source="weights.pth")
    msg = str(info.value)
    assert "missing keys: update_block.flow_head.conv2.bias" in msg
    assert "feature_encoder.extra.weight (fnet.extra.weight in the file)" in msg


def test_map_reports_shape_mismatch() -> None:
    model = raft_small()
    state = dict(model.state_dict())
    state["update_block.flow_head.conv2.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"update_block\.flow_head\.conv2\.bias \[3\]"):
        map_raft_state_dict(state, model)


# ------------------------------------------------------------------------------------------
# RAFTFlow


@pytest.fixture(scope="module")
def small_raft() -> torch.nn.Module:
    torch.manual_seed(0)
    return raft_small().eval()


def _direct_flow(model: torch.nn.Module, a: np.ndarray, b: np.ndarray, iters: int) -> np.ndarray:
    def t(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0

    with torch.no_grad():
        flow = model(t(a), t(b), num_flow_updates=iters)[-1]
    return flow[0].permute(1, 2, 0).numpy()


def test_raft_flow_matches_torchvision_on_an_unpadded_frame(
    small_raft: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "raft_small.pth"
    torch.save(small_raft.state_dict(), path)
    raft = RAFTFlow(path, iterations=2)
    assert raft.name == "raft:raft_small.pth"
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (128, 136, 3), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    flow = raft(_frame(a, 0), _frame(b, 1))
    assert flow.shape == (128, 136, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(flow, _direct_flow(small_raft, a, b, 2), atol=1e-5)


def test_raft_flow_pads_small_frames_and_crops_back(
    small_raft: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "raft_small.pth"
    torch.save(small_raft.state_dict(), path)
    raft = RAFTFlow(path, iterations=1)
    a = np.repeat(_texture(45, 62)[..., None], 3, axis=2)
    flow = raft(_frame(a, 0), _frame(a, 1))
    assert flow.shape == (45, 62, 2)
    assert np.isfinite(flow).all()
    # the padded input, run directly, gives the same numbers in the frame's window
    padded = cv2.copyMakeBorder(a, 41, 42, 33, 33, cv2.BORDER_REPLICATE)  # 45 -> 128, 62 -> 128
    full = _direct_flow(small_raft, padded, padded, 1)
    np.testing.assert_allclose(flow, full[41 : 41 + 45, 33 : 33 + 62], atol=1e-5)
    with pytest.raises(ValueError, match="same size"):
        raft(_frame(a, 0), _frame(a[:40], 1))


def test_raft_flow_loads_original_names_nested_and_prefixed(
    small_raft: torch.nn.Module, tmp_path: Path
) -> None:
    plain, original = tmp_path / "tv.pth", tmp_path / "smurf_original.pth"
    torch.save(small_raft.state_dict(), plain)
    nested = {
        "model": {
            f"module.{k}": v for k, v in _original_state(small_raft.state_dict(), True).items()
        },
        "step": torch.tensor(7),
    }
    torch.save(nested, original)
    a = np.repeat(_texture(128, 128)[..., None], 3, axis=2)
    b = np.roll(a, 1, axis=0)
    f1 = RAFTFlow(plain, iterations=1)(_frame(a, 0), _frame(b, 1))
    f2 = RAFTFlow(original, iterations=1)(_frame(a, 0), _frame(b, 1))
    np.testing.assert_array_equal(f1, f2)


def test_raft_flow_cups_smurf_layout(tmp_path: Path) -> None:
    """CUPS' SMURF port: raft_large with an InstanceNorm context encoder, wrapped as ``raft.``."""
    context = FeatureEncoder(
        block=ResidualBlock, layers=(64, 64, 96, 128, 256), norm_layer=torch.nn.InstanceNorm2d
    )
    smurf = raft_large(context_encoder=context)
    path = tmp_path / "raft_smurf.pt"
    torch.save({f"raft.{k}": v for k, v in smurf.state_dict().items()}, path)
    raft = RAFTFlow(path, iterations=1)
    assert raft.name == "raft:raft_smurf.pt"
    assert isinstance(raft.model.context_encoder.convnormrelu[1], torch.nn.InstanceNorm2d)
    assert raft.model.mask_predictor is not None


def test_raft_flow_file_errors(small_raft: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        RAFTFlow(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        RAFTFlow(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save([torch.zeros(1)], wrong)
    with pytest.raises(ValueError, match=r"wrong\.pth.*expected a RAFT state dict"):
        RAFTFlow(wrong)
    partial = tmp_path / "partial.pth"
    state = dict(small_raft.state_dict())
    del state["update_block.flow_head.conv1.weight"]
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"partial\.pth.*update_block\.flow_head\.conv1\.weight"):
        RAFTFlow(partial)
    with pytest.raises(ValueError, match="iterations"):
        RAFTFlow(partial, iterations=0)


@pytest.mark.parametrize("channels", [2, 5, 27])
def test_bilinear_warp_is_exact_for_any_channel_count(channels: int) -> None:
    # OpenCV samples float images of 2, 5, 27, ... channels on a 1/32-pixel grid; warp must not
    rng = np.random.default_rng(channels)
    values = rng.random((12, 16, channels)).astype(np.float32)
    flow = np.zeros((12, 16, 2), np.float32)
    flow[..., 0], flow[..., 1] = 0.3137, 0.7021  # a sub-pixel shift off the 1/32 grid
    out = warp(values, flow)
    y, x = 5, 7  # interior pixel: exact bilinear interpolation by hand
    sx, sy = x + 0.3137, y + 0.7021
    x0, y0 = int(np.floor(sx)), int(np.floor(sy))
    ax, ay = sx - x0, sy - y0
    expected = (
        values[y0, x0] * (1 - ax) * (1 - ay)
        + values[y0, x0 + 1] * ax * (1 - ay)
        + values[y0 + 1, x0] * (1 - ax) * ay
        + values[y0 + 1, x0 + 1] * ax * ay
    )
    np.testing.assert_allclose(out[y, x], expected, atol=2e-5)
