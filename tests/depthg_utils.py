"""Tiny randomly initialised backbones and DepthG models for the tests (written to tmp_path; no
weights are ever downloaded or kept in the repository)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

TINY_VIT = "vit_tiny_patch16_224"  # 192 channels, patch 16


def tiny_vit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a random timm ViT-Tiny/16 (the layout of a DINO ViT checkpoint)."""
    import timm

    torch.manual_seed(seed)
    net = timm.create_model(TINY_VIT, pretrained=False, num_classes=0)
    return {k: v.clone() for k, v in net.state_dict().items()}


def write_tiny_vit(path: Path, seed: int = 0, wrap: Any = None) -> Path:
    """Save :func:`tiny_vit_state` to ``path``, optionally transformed by ``wrap(state)``."""
    state = tiny_vit_state(seed)
    torch.save(wrap(state) if wrap is not None else state, path)
    return path


def tiny_model_file(
    folder: Path, num_classes: int, *, code_dim: int = 8, seed: int = 0, **kwargs: Any
) -> Path:
    """A DepthG model file (random head, random unit centroids) on a tiny ViT in ``folder``."""
    from vcups_core.cues.depthg import (
        BackboneRecord,
        DepthGHead,
        DepthGModel,
        load_backbone,
    )
    from vcups_core.jobs import file_sha256

    weights = folder / "vit_tiny.pth"
    if not weights.is_file():
        write_tiny_vit(weights, seed)
    backbone = load_backbone(weights)
    torch.manual_seed(seed)
    head = DepthGHead(backbone.channels, code_dim)
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((num_classes, code_dim)).astype(np.float32)
    record = BackboneRecord("vit", backbone.arch, str(weights), file_sha256(weights))
    model = DepthGModel(backbone, head, centroids, record, **kwargs)
    out = folder / "depthg.pt"
    model.save(out)
    return out


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block: these tests run thousands of tiny ops, and
    on 2 cores shared with another job torch's spinning workers made them ~40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
