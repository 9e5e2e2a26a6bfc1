"""Load local backbone weights: torchvision layout or the detectron2 layout of CutLER/U2Seg/CUPS.

Two layouts are understood, detected from the key names:

* **torchvision** (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ``layer1.0.bn1.*``,
  ``layer1.0.downsample.0/1.*``, ``fc.*``), as written by ``torch.save(resnet.state_dict())``.
* **detectron2** (``stem.conv1.weight``, ``stem.conv1.norm.*``, ``res2.0.conv1.weight``,
  ``res2.0.conv1.norm.{weight,bias,running_mean,running_var}``, ``res2.0.shortcut.weight``,
  ``res2.0.shortcut.norm.*``), e.g. CutLER's ``dino_RN50_pretrain_d2_format.pkl`` that CUPS
  loads. A ``backbone.bottom_up.`` or ``backbone.`` prefix is stripped.

File formats:

* ``.pkl``: a pickle holding a dict (optionally ``{"model": {...}}``) of numpy arrays. It is read
  with a **restricted unpickler** that can only rebuild numpy arrays, numpy dtypes/scalars and
  dicts; anything needing other code (a class, a function) is refused with :class:`ValueError`.
* ``.pth`` / ``.pt``: read with ``torch.load(..., weights_only=True)``; the state dict may be
  nested under ``"model"`` or ``"state_dict"``.

Nothing is ever downloaded.
"""

from __future__ import annotations

import codecs
import logging
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

Layout = Literal["torchvision", "detectron2"]

_PREFIXES = ("backbone.bottom_up.", "backbone.body.", "backbone.", "module.")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Globals a pickle of numpy arrays needs (numpy 1 and 2 module names, protocols 2-5)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        # protocol 2 writes bytes as _codecs.encode(str, "latin1"); it runs no user code
        ("_codecs", "encode"): codecs.encode,
    }
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = getattr(numeric, "_frombuffer")  # noqa: B009
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


@dataclass
class WeightsReport:
    """What :func:`load_backbone_weights` did.

    Attributes:
        path: the weights file.
        layout: the key layout found in the file.
        loaded: target keys that received a tensor.
        missing: target keys the file did not provide (``num_batches_tracked`` not counted).
        unexpected: file keys (after conversion to torchvision names) with no target, e.g. ``fc.*``.
        mismatched: keys present in both with different shapes (not loaded), as
            ``"key: file shape vs model shape"``.
    """

    path: str
    layout: Layout
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and nothing was left over or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only numpy arrays, dtypes, scalars and (ordered) dicts."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays and dicts are allowed"
            ) from None


def read_pickle_arrays(path: str | Path) -> dict[str, Any]:
    """Read a detectron2-style ``.pkl`` of numpy arrays without executing pickled code.

    Returns:
        The unpickled top-level dict.

    Raises:
        ValueError: if the pickle needs anything but numpy arrays and dicts (it would need code
            execution to load), or is not a dict.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{p} needs pickle code execution to load ({exc}); refusing. Backbone .pkl files "
            "must hold only numpy arrays in dicts (the detectron2/CutLER format)."
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a dict at the top level, got {type(data).__name__}")
    return data


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file (``.pkl`` or ``.pth``/``.pt``) into a flat dict of tensors.

    Nested ``{"model": ...}`` / ``{"state_dict": ...}`` dicts are unwrapped; non-array entries
    (e.g. ``__author__``) are dropped.

    Raises:
        ValueError: on a pickle that needs code execution or a file without a state dict.
        FileNotFoundError: if ``path`` does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights not found: {p}")
    if p.suffix == ".pkl":
        data: Any = read_pickle_arrays(p)
    else:
        try:
            data = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"{p} needs pickle code execution to load; refusing (weights_only=True): {exc}"
            ) from exc
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"{p}: no state dict found (got {type(data).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            out[str(key)] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, torch.Tensor):
            out[str(key)] = value
    return out


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a common wrapper prefix (``backbone.bottom_up.``, ``backbone.``, ``module.``)."""
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def detect_layout(state: dict[str, torch.Tensor]) -> Layout:
    """``"detectron2"`` if any key starts with ``stem.`` or ``resN.``, else ``"torchvision"``."""
    if any(k.startswith("stem.") or re.match(r"res[2-5]\.", k) for k in state):
        return "detectron2"
    return "torchvision"


def detectron2_to_torchvision_key(key: str) -> str:
    """Map one detectron2 ResNet key to torchvision's name (unknown keys are returned as is).

    ``stem.conv1.weight`` -> ``conv1.weight``; ``stem.conv1.norm.X`` -> ``bn1.X``;
    ``res{2..5}.B.convK.weight`` -> ``layer{1..4}.B.convK.weight``;
    ``res{2..5}.B.convK.norm.X`` -> ``layer{1..4}.B.bnK.X``;
    ``res{2..5}.B.shortcut.weight`` -> ``layer{1..4}.B.downsample.0.weight``;
    ``res{2..5}.B.shortcut.norm.X`` -> ``layer{1..4}.B.downsample.1.X``.
    """
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm.") :]
    if key.startswith("stem.conv1."):
        return "conv1." + key[len("stem.conv1.") :]
    m = re.fullmatch(r"res([2-5])\.(\d+)\.(.+)", key)
    if not m:
        return key
    layer = f"layer{int(m.group(1)) - 1}.{m.group(2)}."
    rest = m.group(3)
    conv = re.fullmatch(r"conv(\d)\.norm\.(.+)", rest)
    if conv:
        return f"{layer}bn{conv.group(1)}.{conv.group(2)}"
    if rest.startswith("shortcut.norm."):
        return f"{layer}downsample.1.{rest[len('shortcut.norm.') :]}"
    if rest.startswith("shortcut."):
        return f"{layer}downsample.0.{rest[len('shortcut.') :]}"
    return layer + rest


def to_torchvision_layout(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Layout]:
    """Strip wrapper prefixes and convert detectron2 keys; returns ``(state, source layout)``."""
    state = strip_prefixes(state)
    layout = detect_layout(state)
    if layout == "detectron2":
        state = {detectron2_to_torchvision_key(k): v for k, v in state.items()}
    return state, layout


def load_backbone_weights(resnet_body: nn.Module, path: str | Path) -> WeightsReport:
    """Load a local weights file into a torchvision ResNet (in place) and report what happened.

    Missing keys stay at their current (random) values; unexpected and shape-mismatched keys
    are skipped. ``num_batches_tracked`` buffers are never reported as missing (detectron2
    files do not have them). The report is also logged (INFO, WARNING when incomplete).

    Args:
        resnet_body: a ``torchvision.models.ResNet`` (its ``fc`` may be present or not).
        path: ``.pkl`` (detectron2, numpy arrays) or ``.pth``/``.pt`` (either layout).

    Returns:
        A :class:`WeightsReport`.

    Raises:
        ValueError: on a pickle that needs code execution (see :func:`read_state_dict`).
    """
    state, layout = to_torchvision_layout(read_state_dict(path))
    target = resnet_body.state_dict()
    report = WeightsReport(path=str(path), layout=layout)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append(
                f"{key}: {tuple(value.shape)} in file vs {tuple(target[key].shape)} in model"
            )
        else:
            to_load[key] = value.to(target[key].dtype)
    report.missing = [
        k
        for k in target
        if k not in to_load
        and not k.endswith("num_batches_tracked")
        and not any(m.startswith(k + ":") for m in report.mismatched)
    ]
    report.loaded = sorted(to_load)
    resnet_body.load_state_dict(to_load, strict=False)
    level = logging.INFO if report.complete else logging.WARNING
    logger.log(
        level,
        "backbone weights %s (%s layout): %d loaded, %d missing %s, %d unexpected %s, "
        "%d shape-mismatched %s",
        path,
        layout,
        len(report.loaded),
        len(report.missing),
        report.missing[:10],
        len(report.unexpected),
        report.unexpected[:10],
        len(report.mismatched),
        report.mismatched[:10],
    )
    return report


def format_keys(keys: list[str], limit: int = 12) -> str:
    """``keys`` joined for a message, the first ``limit`` of them and how many in all."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def state_dict_problems(
    expected: dict[str, torch.Tensor],
    given: dict[str, torch.Tensor],
    *,
    origin: dict[str, str] | None = None,
) -> str:
    """What keeps ``given`` from loading into a model whose state dict is ``expected``.

    Args:
        expected: the model's ``state_dict()``.
        given: the file's tensors, keys already mapped to the model's names.
        origin: the file's own name of a mapped key (shown next to an unexpected key).

    Returns:
        ``"missing keys: ...; unexpected keys: ...; shape mismatches: ..."`` (the parts that
        apply; ``num_batches_tracked`` buffers may be missing), or ``""`` when it loads.
    """
    origin = origin or {}
    missing = [k for k in expected if k not in given and not k.endswith(".num_batches_tracked")]
    unexpected = [
        f"{k} ({origin[k]} in the file)" if origin.get(k, k) != k else k
        for k in given
        if k not in expected
    ]
    mismatched = [
        f"{k} {list(given[k].shape)} (model {list(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {format_keys(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {format_keys(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches: {format_keys(mismatched)}")
    return "; ".join(parts)
