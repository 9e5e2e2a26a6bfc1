"""Model checkpoints: weights plus the metadata needed to rebuild and trust them.

File layout (one ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "vcups-checkpoint",
     "metadata": {format_version, model_name, model_config (plain dict), categories
                  {names, num_things, pseudo_class_ids}, thing_stuff {num_things, num_stuff},
                  normalization {pixel_mean, pixel_std, input}, torch_version,
                  torchvision_version, vcups_version, weights_sha256, extra},
     "state_dict": {name: tensor}}

The file is written atomically (temporary file + ``os.replace``). Loading never executes
pickled code (``torch.load(weights_only=True)``) and checks the weights' SHA-256.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision

from vcups_core import __version__
from vcups_core.checks import check_model_file
from vcups_core.config import ConfigError, config_from_dict, config_to_dict, load_config
from vcups_core.configs.model import ModelConfig
from vcups_core.jobs import atomic_write_stream
from vcups_core.model.build import build_model
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.types import CategoryTable

FORMAT = "vcups-checkpoint"
FORMAT_VERSION = 1


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor (name, dtype, shape and bytes) in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def categories_to_dict(categories: CategoryTable) -> dict[str, Any]:
    """Plain-dict form of a :class:`CategoryTable` (for checkpoints and ONNX metadata)."""
    return {
        "names": list(categories.names),
        "num_things": categories.num_things,
        "pseudo_class_ids": list(categories.pseudo_class_ids),
    }


def categories_from_dict(data: Mapping[str, Any]) -> CategoryTable:
    """Inverse of :func:`categories_to_dict`."""
    return CategoryTable(
        tuple(str(n) for n in data["names"]),
        int(data["num_things"]),
        tuple(int(i) for i in data["pseudo_class_ids"]),
    )


def checkpoint_metadata(
    model: PanopticCascadeMaskTrack, *, sha256: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The metadata dict stored with ``model``'s weights.

    Raises:
        ValueError: if the model has no ``config`` (build it with ``build_model``).
    """
    if model.config is None:
        raise ValueError("the model has no config: build it with vcups_core.model.build_model")
    cfg = model.config
    cats = model.categories
    return {
        "format_version": FORMAT_VERSION,
        "model_name": model.name,
        "model_config": config_to_dict(cfg),
        "categories": categories_to_dict(cats),
        "thing_stuff": {"num_things": cats.num_things, "num_stuff": cats.num_stuff},
        "normalization": {
            "pixel_mean": list(cfg.pixel_mean),
            "pixel_std": list(cfg.pixel_std),
            "input": "RGB float32 in [0, 1], channels first",
        },
        "torch_version": str(torch.__version__),  # TorchVersion would need a pickled class
        "torchvision_version": str(torchvision.__version__),
        "vcups_version": __version__,
        "weights_sha256": sha256,
        "extra": dict(extra or {}),
    }


def save_checkpoint(
    model: PanopticCascadeMaskTrack,
    path: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and metadata to ``path`` atomically.

    Args:
        model: a model built by :func:`~vcups_core.model.build.build_model`.
        path: destination (conventionally ``.pt``); parent directories are created.
        extra: more plain metadata (ints, floats, strings, lists, dicts), e.g. the training step.

    Returns:
        ``path`` as a :class:`Path`.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "metadata": checkpoint_metadata(model, sha256=weights_sha256(state), extra=extra),
        "state_dict": state,
    }
    atomic_write_stream(out, lambda f: torch.save(payload, f))
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(state_dict, metadata)`` without building the model.

    Raises:
        ValueError: if the file is a folder, empty, truncated or damaged, needs pickle code
            execution, is not a vcups checkpoint, has an unsupported format version, or its
            weights do not match the stored SHA-256.
        FileNotFoundError: if ``path`` does not exist.
    """
    p = check_model_file(path)
    try:
        data = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        detail = next((ln for ln in lines if "WeightsUnpickler" in ln), lines[0] if lines else "")
        raise ValueError(
            f"{p} needs pickle code execution to load; refusing; re-save it with vcups "
            "(vcups_core.model.checkpoint.save_checkpoint) from a trusted environment. "
            f"Detail: {detail.strip()}"
        ) from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        # torch's zip reader: "failed finding central directory" (cut), EOFError (a stub), ...
        detail = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"{p}: not a readable checkpoint (truncated or damaged?): {detail}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{p} is not a vcups checkpoint (no 'format': {FORMAT!r} entry)")
    meta = data.get("metadata")
    state = data.get("state_dict")
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise ValueError(f"{p}: a vcups checkpoint needs 'metadata' and 'state_dict' dicts")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{p}: checkpoint format version {version!r} is not supported")
    digest = weights_sha256(state)
    if digest != meta.get("weights_sha256"):
        raise ValueError(
            f"{p}: weights SHA-256 {digest} does not match the stored "
            f"{meta.get('weights_sha256')} (corrupted or edited file)"
        )
    return state, meta


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    config: ModelConfig | str | Path | None = None,
) -> tuple[PanopticCascadeMaskTrack, dict[str, Any]]:
    """Rebuild the model stored in ``path`` and load its weights.

    The stored config is used with ``backbone.weights`` cleared (the checkpoint holds every
    weight). The model is returned in eval mode on ``device``.

    Args:
        path: the checkpoint.
        device: where the model goes.
        config: optional model config (or YAML path) to build instead of the stored one, e.g.
            to change inference thresholds; its architecture must fit the stored weights.

    Returns:
        ``(model, metadata)``.

    Raises:
        ValueError: see :func:`read_checkpoint`; also if the stored config is invalid or the
            weights do not fit the rebuilt model.
    """
    state, meta = read_checkpoint(path)
    if isinstance(config, (str, Path)):
        config = load_config(config, ModelConfig)
    cfg_dict = dict(meta["model_config"] if config is None else config_to_dict(config))
    cfg_dict["backbone"] = {**cfg_dict.get("backbone", {}), "weights": ""}
    try:
        cfg = config_from_dict(cfg_dict, ModelConfig, source=f"{path} (model_config)")
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    model = build_model(cfg, categories_from_dict(meta["categories"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        raise ValueError(f"{path}: weights do not fit the model: {exc}") from exc
    return model.to(device).eval(), meta
