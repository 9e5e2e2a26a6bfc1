"""ROS parameters <-> :class:`NodeConfig` (pure functions; the node declares what these return).

ROS parameters are flat and dotted (``streaming.tracker.iou_threshold``); the config is nested.
Both directions go through :mod:`vcups_core.config`, so the node validates exactly like every
file, at start-up and for live changes alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vcups_core.config import ConfigError, config_from_dict, config_to_dict
from vcups_core.configs.node import NodeConfig

RUNTIME_PREFIXES = (
    "streaming.",
    "output.",
    "diagnostics.",
    "input.max_image_age_s",
    "input.max_pixels",
)
"""Parameters that take effect immediately when set on a running node."""

RECONFIGURE_HINT = (
    "takes effect only through the lifecycle: deactivate, cleanup, then configure and activate"
)


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; tuples become lists (ROS array parameters)."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, tuple):
            flat[name] = list(value)
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` (array parameters stay lists; the config turns them into tuples)."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, (list, tuple)) else value
    return nested


def default_parameters() -> dict[str, Any]:
    """Every node parameter with its default, as the node declares them."""
    return flatten(config_to_dict(NodeConfig()))


def config_from_parameters(values: Mapping[str, Any]) -> NodeConfig:
    """Validate flat parameter values into a :class:`NodeConfig` (``ConfigError`` if invalid)."""
    return config_from_dict(unflatten(values), NodeConfig, source="perception_node parameters")


def is_runtime(name: str) -> bool:
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in RUNTIME_PREFIXES)


def check_update(
    current: NodeConfig, changes: Mapping[str, Any], *, configured: bool
) -> tuple[NodeConfig | None, str]:
    """Validate a parameter change: ``(new config, "")`` or ``(None, reason)``.

    Before configuration every valid change is accepted; afterwards only :data:`RUNTIME_PREFIXES`
    may change (others need the lifecycle, see :data:`RECONFIGURE_HINT`).
    """
    merged = flatten(config_to_dict(current))
    unknown = sorted(set(changes) - set(merged))
    if unknown:
        return None, f"unknown parameter(s) {', '.join(unknown)}"
    if configured:
        frozen = sorted(
            n for n, v in changes.items() if not is_runtime(n) and merged[n] != _plain(v)
        )
        if frozen:
            return None, f"{', '.join(frozen)} {RECONFIGURE_HINT}"
    merged.update({n: _plain(v) for n, v in changes.items()})
    try:
        return config_from_parameters(merged), ""
    except ConfigError as exc:
        return None, "; ".join(str(p) for p in exc.problems)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
