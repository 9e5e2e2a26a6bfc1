"""The DepthG-style semantic model: backbone loading and its key errors, head, losses on
hand-made features, probe, inference and the model file (tiny random backbones in tmp_path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from depthg_utils import (
    TINY_VIT,
    one_torch_thread,
    tiny_model_file,
    tiny_vit_state,
    write_tiny_vit,
)

from vcups_core.cues.depthg import (
    DepthGHead,
    DepthGModel,
    LossWeights,
    correspondence_loss,
    depth_feature_loss,
    depthg_losses,
    infer_backbone,
    is_model_file,
    load_backbone,
    normalised_inverse_depth,
    read_model_file,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


# ---------------------------------------------------------------------------------------------
# backbone


LAYOUTS = {
    "bare": lambda s: s,
    "module": lambda s: {f"module.{k}": v for k, v in s.items()},
    "dino_teacher": lambda s: {
        "teacher": {f"module.backbone.{k}": v for k, v in s.items()}
        | {"module.head.mlp.0.weight": torch.zeros(4, 192)},
        "student": {f"module.backbone.{k}": v * 0 for k, v in s.items()},
        "epoch": 3,
    },
    "flat_teacher_student": lambda s: (
        {f"teacher.backbone.{k}": v for k, v in s.items()}
        | {f"student.backbone.{k}": v * 0 for k, v in s.items()}
    ),
    "state_dict": lambda s: {"state_dict": {f"backbone.{k}": v for k, v in s.items()}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_vit_checkpoint_layouts_load_the_same_weights(tmp_path: Path, layout: str) -> None:
    path = write_tiny_vit(tmp_path / "vit.pth", wrap=LAYOUTS[layout])
    backbone = load_backbone(path)
    assert (backbone.kind, backbone.arch, backbone.stride, backbone.channels) == (
        "vit",
        TINY_VIT,
        16,
        192,
    )
    expected = tiny_vit_state()
    for key in ("pos_embed", "blocks.11.mlp.fc2.weight", "norm.bias"):
        assert torch.equal(backbone.net.state_dict()[key], expected[key])  # the teacher's
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training  # frozen: always eval
    feats = backbone(torch.randn(2, 3, 32, 48))
    assert feats.shape == (2, 192, 2, 3)  # dynamic image size, patch tokens only
    with pytest.raises(ValueError, match="multiple of the stride 16"):
        backbone(torch.randn(1, 3, 30, 48))


def test_resnet_checkpoints_with_module_prefix_and_fc(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    r18 = torchvision.models.resnet18(weights=None)
    torch.save({f"module.{k}": v for k, v in r18.state_dict().items()}, tmp_path / "r18.pth")
    b18 = load_backbone(tmp_path / "r18.pth")
    assert (b18.kind, b18.arch, b18.stride, b18.channels) == ("resnet", "resnet18", 32, 512)
    assert torch.equal(b18.net.state_dict()["layer4.1.conv2.weight"], r18.layer4[1].conv2.weight)
    assert b18(torch.randn(1, 3, 64, 96)).shape == (1, 512, 2, 3)
    r50 = torchvision.models.resnet50(weights=None)
    state = {k: v for k, v in r50.state_dict().items() if not k.startswith("fc.")}  # DINO RN50
    torch.save(state, tmp_path / "r50.pth")
    b50 = load_backbone(tmp_path / "r50.pth")
    assert (b50.arch, b50.stride, b50.channels) == ("resnet50", 16, 2048)  # layer4 dilated
    assert b50(torch.randn(1, 3, 64, 96)).shape == (1, 2048, 4, 6)
    with pytest.raises(ValueError, match="a resnet checkpoint, not a vit"):
        load_backbone(tmp_path / "r50.pth", "vit")


def test_a_wrong_file_names_its_keys(tmp_path: Path) -> None:
    unrelated = tmp_path / "raft.pth"
    torch.save(
        {"fnet.conv1.weight": torch.zeros(2), "update_block.gru.bias": torch.zeros(2)}, unrelated
    )
    with pytest.raises(ValueError, match=r"neither a ViT.*fnet\.conv1\.weight"):
        load_backbone(unrelated)
    with pytest.raises(ValueError, match="not a vit_tiny_patch16_224") as info:
        load_backbone(unrelated, "vit", TINY_VIT)
    message = str(info.value)
    assert "missing keys: cls_token, pos_embed" in message
    assert "unexpected keys: fnet.conv1.weight, update_block.gru.bias" in message
    truncated = tiny_vit_state()
    del truncated["blocks.3.attn.qkv.weight"]
    truncated["blocks.0.norm1.weight"] = torch.zeros(7)
    torch.save(truncated, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match="missing keys") as info:
        load_backbone(tmp_path / "cut.pth")
    assert "missing keys: blocks.3.attn.qkv.weight" in str(info.value)
    assert "shape mismatches: blocks.0.norm1.weight [7] (model [192])" in str(info.value)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot be read with torch\.load"):
        load_backbone(tmp_path / "text.pth")
    with pytest.raises(FileNotFoundError):
        load_backbone(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="not a timm ViT"):
        load_backbone(tmp_path / "cut.pth", "vit", "no_such_vit")


def test_arch_inferred_from_shapes() -> None:
    def vit(width: int, depth: int, patch: int) -> dict[str, torch.Tensor]:
        state = {"patch_embed.proj.weight": torch.zeros(width, 3, patch, patch)}
        state |= {f"blocks.{i}.norm1.weight": torch.zeros(width) for i in range(depth)}
        return state

    assert infer_backbone(vit(768, 12, 8)) == ("vit", "vit_base_patch8_224")  # DINO ViT-B/8
    assert infer_backbone(vit(384, 12, 16)) == ("vit", "vit_small_patch16_224")
    with pytest.raises(ValueError, match="--backbone-arch"):
        infer_backbone(vit(500, 3, 8))


# ---------------------------------------------------------------------------------------------
# head and losses


def test_head_shapes_and_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    head = DepthGHead(192, 10)
    x = torch.randn(2, 192, 3, 5)
    assert head(x).shape == (2, 10, 3, 5)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))


def _points(vectors: list[list[float]]) -> torch.Tensor:
    """``[1, C, 1, n]`` features of n points."""
    return torch.tensor(vectors, dtype=torch.float32).T[None, :, None, :]


def test_correspondence_loss_rewards_code_agreement_where_features_agree() -> None:
    f = _points([[1, 0], [1, 0]])  # two points, identical features: F = 1
    f_opposite = _points([[1, 0], [-1, 0]])  # F = -1 between them
    c = _points([[1, 1], [1, 1]]).requires_grad_()  # identical codes: S = 1
    shift = 0.2
    agree = correspondence_loss(f, f, c, c, shift)
    disagree = correspondence_loss(f_opposite, f_opposite, c, c, shift)
    assert agree[0, 0, 0, 0, 1].item() == pytest.approx(-(1 - shift))
    assert disagree[0, 0, 0, 0, 1].item() == pytest.approx(1 + shift)
    assert agree.mean() < disagree.mean()
    # codes already anti-correlated: S clamped at 0, no loss and no gradient
    c_anti = _points([[1, 0], [-1, 0]]).requires_grad_()
    loss = correspondence_loss(f, f, c_anti, c_anti, shift)[0, 0, 0, 0, 1]
    assert loss.item() == 0.0
    loss.backward()
    assert c_anti.grad is not None and float(c_anti.grad.abs().sum()) == 0.0


def test_depth_feature_loss_pulls_equal_depths_together() -> None:
    codes = _points([[1, 0], [1, 0], [0.9, 0.1]])
    same = torch.tensor([0.5, 0.5, 0.5]).view(1, 1, 1, 3)
    apart = torch.tensor([0.0, 1.0, 0.5]).view(1, 1, 1, 3)
    assert depth_feature_loss(codes, same, 0.03) < depth_feature_loss(codes, apart, 0.03)
    unknown = torch.full((1, 1, 1, 3), float("nan"))
    assert depth_feature_loss(codes, unknown, 0.03).item() == 0.0
    partly = torch.tensor([0.5, float("nan"), 0.5]).view(1, 1, 1, 3)
    assert torch.isfinite(depth_feature_loss(codes, partly, 0.03))
    rho = normalised_inverse_depth(np.array([[1.0, 2.0], [4.0, np.nan]], np.float32))
    np.testing.assert_allclose(rho[0], [1.0, 1 / 3], rtol=1e-6)
    assert rho[1, 0] == 0.0 and np.isnan(rho[1, 1])
    assert np.isnan(normalised_inverse_depth(np.full((2, 2), 3.0, np.float32))).all()


def test_depthg_losses_terms_and_depth_decay() -> None:
    torch.manual_seed(0)
    feats, feats_pos = torch.randn(3, 16, 4, 4), torch.randn(3, 16, 4, 4)
    code = torch.randn(3, 8, 4, 4, requires_grad=True)
    depth = torch.rand(3, 1, 16, 16)
    weights = LossWeights(feature_samples=5, neg_samples=2)
    terms = depthg_losses(
        feats, feats_pos, code, code.roll(1, 0), depth, weights, torch.Generator().manual_seed(1)
    )
    assert set(terms) == {"total", "pos_intra", "pos_inter", "neg_inter", "depth"}
    expected = (
        0.95 * terms["pos_intra"]
        + 1.02 * terms["pos_inter"]
        + 0.57 * terms["neg_inter"]
        + 0.09 * terms["depth"]
    )
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["total"].backward()
    assert code.grad is not None and float(code.grad.abs().sum()) > 0
    assert weights.depth_at(399) == (0.09, 0.03)
    assert weights.depth_at(800) == pytest.approx((0.09 * 0.64, 0.03 * 0.64))
    no_depth = depthg_losses(
        feats, feats_pos, code, code, None, weights, torch.Generator().manual_seed(1)
    )
    assert no_depth["depth"].item() == 0.0


# ---------------------------------------------------------------------------------------------
# inference and the model file


def test_log_proba_shapes_depth_and_fallback(tmp_path: Path) -> None:
    model = DepthGModel.load(tiny_model_file(tmp_path, 5), crop=64, stride=32)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)  # not a multiple of the patch
    logp = model.log_proba(image)
    assert logp.shape == (5, 40, 72) and logp.dtype == np.float32
    np.testing.assert_allclose(np.exp(logp).sum(0), 1.0, rtol=1e-5)
    # no depth = every pixel unknown (the documented fallback depth)
    np.testing.assert_array_equal(logp, model.log_proba(image, np.full((40, 72), np.nan)))
    near = model.log_proba(image, np.full((40, 72), 0.01, np.float32) * np.arange(1, 73))
    assert near.shape == logp.shape and np.isfinite(near).all()
    code = model.encode(model.normalise(image))
    assert code.shape == (8, 40, 72)  # padded to 48x80, upsampled and cropped back
    assert model.encode(model.normalise(image[:32, :64])).shape == (8, 2, 4)  # the patch grid
    with pytest.raises(ValueError, match="depth must be"):
        model.log_proba(image, np.ones((4, 4), np.float32))


def test_model_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tiny_model_file(tmp_path, 4, crop=64, stride=32)
    assert is_model_file(path)
    content = read_model_file(path)
    assert content["format"] == "vcups-depthg" and content["code_dim"] == 8
    assert content["backbone"]["arch"] == TINY_VIT and len(content["backbone"]["sha256"]) == 64
    assert content["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    image = np.random.default_rng(1).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    a = DepthGModel.load(path, crop=64, stride=32)
    assert a.num_classes == 4
    # the backbone moved next to the model file: found there, hash checked
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "depthg.pt").write_bytes(path.read_bytes())
    (tmp_path / "vit_tiny.pth").rename(moved / "vit_tiny.pth")
    b = DepthGModel.load(moved / "depthg.pt", crop=64, stride=32)
    np.testing.assert_array_equal(a.log_proba(image), b.log_proba(image))
    write_tiny_vit(moved / "vit_tiny.pth", seed=1)  # another backbone under the same name
    with pytest.raises(ValueError, match="not the one it was trained on"):
        DepthGModel.load(moved / "depthg.pt")
    (moved / "vit_tiny.pth").unlink()
    with pytest.raises(FileNotFoundError, match="backbone"):
        DepthGModel.load(moved / "depthg.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a DepthG model file"):
        DepthGModel.load(foreign)
    clusters = tmp_path / "c.npz"
    np.savez(clusters, a=np.zeros(3))
    assert not is_model_file(clusters)
