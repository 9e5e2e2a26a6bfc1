"""Typed configuration: dataclass schemas per component, loaded from YAML and validated in one place.

Each component has a frozen dataclass whose fields carry their default, their allowed range or
choices, and a one-line help text (:func:`option`). YAML files are read with ``yaml.safe_load``
semantics (plus a duplicate-key check) and translated to the dataclass by
:func:`config_from_dict`; every unknown key, wrong type and out-of-range value found is reported in
**one** :class:`ConfigError` naming the file, the key path, the value and what is allowed.

A file may set only some keys; the rest keep their defaults. A ROS 2 parameter file
(``<node or /**>: {ros__parameters: {...}}``) is unwrapped, so the node's ``config/perception.yaml``
is read by the same code as every other config.

The schemas themselves live in :mod:`vcups_core.configs` (one module per component).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB; the biggest default file is a few KB)."""

MAX_YAML_VALUES = 100_000
"""Most values (mappings, lists and scalars, each alias counted as what it stands for) a config
file may hold, so that a small file of nested aliases (a "billion laughs" bomb) is refused before
anything is built from it."""

MAX_LISTED_PROBLEMS = 20
"""Problems a :class:`ConfigError` message lists (the rest are counted)."""

_RANGE = "vcups_range"
_CHOICES = "vcups_choices"
_HELP = "vcups_help"


def option(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """Declare a config field with its default, help text and allowed values.

    Args:
        default: the default value (immutable: use tuples for sequences, :func:`section` for
            nested configs).
        help: one line saying what the key means (shown by ``vcups config show``).
        ge, gt, le, lt: numeric bounds; for tuples/lists they apply to every element.
        choices: allowed values (for strings mostly).
    """
    metadata: dict[str, Any] = {_HELP: help}
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    if any(v is not None for v in bounds.values()):
        metadata[_RANGE] = bounds
    if choices is not None:
        metadata[_CHOICES] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type[T], help: str) -> Any:
    """Declare a nested config section whose default is ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={_HELP: help})


_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel = 3
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = _EXCERPT.maxset = 6
_EXCERPT_CHARS = 120


def excerpt(value: Any) -> str:
    """``repr(value)`` cut to at most about 120 characters, however large or deep ``value`` is
    (for error messages: a key's value may be a 50 MB string or a deeply nested structure)."""
    text = _EXCERPT.repr(value)
    if len(text) > _EXCERPT_CHARS:
        text = text[: _EXCERPT_CHARS - 3] + "..."
    return text


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, what value, and what is allowed."""

    key: str
    value: Any
    allowed: str
    kind: Literal["wrong type", "out of range", "unknown key", "invalid"] = "wrong type"

    def __str__(self) -> str:
        where = excerpt(self.key)[1:-1] if len(self.key) > _EXCERPT_CHARS else self.key
        where = where or "<top level>"
        if self.kind == "unknown key":
            return f"{where} = {excerpt(self.value)}: unknown key (allowed keys: {self.allowed})"
        return f"{where} = {excerpt(self.value)}: {self.kind}, expected {self.allowed}"


class ConfigError(ValueError):
    """A config file (or dict) does not fit its schema. Lists every problem found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = [f"  - {p}" for p in self.problems[:MAX_LISTED_PROBLEMS]]
        if len(self.problems) > MAX_LISTED_PROBLEMS:
            listed.append(f"  ... and {len(self.problems) - MAX_LISTED_PROBLEMS} more")
        lines = "\n".join(listed)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{source}: {len(self.problems)} config {noun}:\n{lines}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one, and a
    document whose aliases expand to more than :data:`MAX_YAML_VALUES` values."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node)
        return node


def _check_expanded_size(root: yaml.Node) -> None:
    """Raise if ``root`` stands for more than :data:`MAX_YAML_VALUES` values once its aliases
    are expanded. Each node is counted once and its count reused (an alias is the same node
    object), so this takes time linear in the file, not in the expansion."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            if total > MAX_YAML_VALUES:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded "
                    "(a YAML alias bomb?)",
                    node.start_mark,
                )
            sizes[id(node)] = total
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {excerpt(key)}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file safely (no object construction, duplicate keys rejected).

    Raises:
        ConfigError: if the file is missing, larger than :data:`MAX_CONFIG_BYTES`, not UTF-8
            text, not valid YAML (the message has the line), or its aliases expand to more
            than :data:`MAX_YAML_VALUES` values.
    """
    p = Path(path)
    try:
        if p.is_dir():
            raise IsADirectoryError(21, "is a folder, not a file")
        with p.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        problem = Problem("", None, f"a readable file ({exc.strerror})", "invalid")
        raise ConfigError(str(p), [problem]) from None
    if len(data) > MAX_CONFIG_BYTES:
        problem = Problem("", "<file>", f"a file of at most {MAX_CONFIG_BYTES} bytes", "invalid")
        raise ConfigError(str(p), [problem])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem("", "<file>", f"UTF-8 text (byte {exc.start} is not)", "invalid")
        raise ConfigError(str(p), [problem]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problem = Problem("", "<unparsable>", f"valid YAML ({exc})", "invalid")
        raise ConfigError(str(p), [problem]) from exc


def unwrap_ros_parameters(data: Any) -> Any:
    """Return the ``ros__parameters`` dict of a ROS 2 parameter file, or ``data`` unchanged.

    Accepts exactly one node entry (``perception_node:`` or the wildcard ``/**:``).
    """
    if isinstance(data, Mapping) and len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, Mapping) and set(inner) == {"ros__parameters"}:
            return inner["ros__parameters"]
    return data


def load_config(path: str | Path, schema: type[T]) -> T:
    """Load ``path`` into the dataclass ``schema``; missing keys keep their defaults.

    Raises:
        ConfigError: listing every unknown key, wrong type and out-of-range value, with the file.
    """
    data = unwrap_ros_parameters(read_yaml(path))
    if data is None:
        data = {}
    return config_from_dict(data, schema, source=str(path))


def config_from_dict(data: Any, schema: type[T], source: str = "<dict>") -> T:
    """Translate a plain (YAML-like) dict to ``schema``, validating every value.

    Raises:
        ConfigError: listing every problem found (not only the first).
    """
    problems: list[Problem] = []
    result = _convert(data, schema, "", problems)
    if problems:
        raise ConfigError(source, problems)
    return typing.cast(T, result)


def config_to_dict(cfg: Any) -> Any:
    """Inverse of :func:`config_from_dict`: plain dicts, lists and scalars (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (tuple, list)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` that validates the changed values like a loaded file."""
    merged = config_to_dict(cfg)
    merged.update(changes)
    return config_from_dict(merged, type(cfg), source=f"replace({type(cfg).__name__})")


def describe(schema: type[Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """List ``(key path, default, help)`` for every leaf key of a schema (for docs and the CLI)."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(schema)
    default = schema()
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key + "."))
        else:
            rows.append(
                (key, repr(config_to_dict(getattr(default, f.name))), f.metadata.get(_HELP, ""))
            )
    return rows


def render_yaml(cfg: Any, *, title: str = "", ros_node: str | None = None) -> str:
    """Write a config as commented YAML: every key on its own line with its help text.

    Args:
        cfg: a config dataclass instance.
        title: optional comment lines put at the top.
        ros_node: if given, wrap the keys as a ROS 2 parameter file for that node name
            (``<ros_node>: {ros__parameters: ...}``); use ``"/**"`` for any node name.

    Returns:
        YAML text that :func:`load_config` reads back to ``cfg``.
    """
    lines = [f"# {t}" if t else "#" for t in title.splitlines()]
    indent = 0
    if ros_node is not None:
        lines += [f"{_yaml_scalar(ros_node)}:", "  ros__parameters:"]
        indent = 4
    _render_into(cfg, indent, lines)
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def _render_into(cfg: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        help_text = f.metadata.get(_HELP, "")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:  # {help_text}")
            _render_into(value, indent + 2, lines)
        else:
            scalar = _yaml_scalar(config_to_dict(value))
            lines.append(f"{pad}{f.name}: {scalar}  # {help_text}")


# --------------------------------------------------------------------------------------------------
# Conversion and validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_type_name(a) for a in args)})"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, key: str, problems: list[Problem]) -> Any:
    """Convert ``value`` to type ``tp``; append problems instead of raising."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, key, problems)
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}:
            return value
        problems.append(Problem(key, value, _type_name(tp)))
        return None
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            trial: list[Problem] = []
            converted = _convert(value, arg, key, trial)
            if not trial:
                return converted
        problems.append(Problem(key, value, _type_name(tp)))
        return None
    if origin in (tuple, list):
        return _convert_sequence(value, tp, key, problems)
    if tp is type(None):
        if value is None:
            return None
        problems.append(Problem(key, value, "null"))
        return None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                problems.append(Problem(key, value, "a finite number", "invalid"))
                return None
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp!r} at {key}")
    problems.append(Problem(key, value, _type_name(tp)))
    return None


def _convert_sequence(value: Any, tp: Any, key: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        problems.append(Problem(key, value, _type_name(tp)))
        return None
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            problems.append(Problem(key, value, _type_name(tp)))
            return None
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [
        _convert(v, t, f"{key}[{i}]", problems)
        for i, (v, t) in enumerate(zip(value, item_types, strict=True))
    ]
    return tuple(items) if origin is tuple else items


def _check_field(value: Any, f: dataclasses.Field[Any], key: str, problems: list[Problem]) -> None:
    bounds = f.metadata.get(_RANGE)
    choices = f.metadata.get(_CHOICES)
    leaves = list(value) if isinstance(value, (tuple, list)) else [value]
    for i, leaf in enumerate(leaves):
        where = f"{key}[{i}]" if isinstance(value, (tuple, list)) else key
        if choices is not None and leaf not in choices:
            problems.append(
                Problem(
                    where, leaf, "one of " + ", ".join(repr(c) for c in choices), "out of range"
                )
            )
        is_number = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
        if bounds and is_number and not _in_bounds(leaf, bounds):
            problems.append(Problem(where, leaf, _bounds_text(bounds), "out of range"))


def _in_bounds(x: float, b: dict[str, float | None]) -> bool:
    return not (
        (b["ge"] is not None and x < b["ge"])
        or (b["gt"] is not None and x <= b["gt"])
        or (b["le"] is not None and x > b["le"])
        or (b["lt"] is not None and x >= b["lt"])
    )


def _bounds_text(b: dict[str, float | None]) -> str:
    parts = []
    for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if b[name] is not None:
            parts.append(f"{sym} {b[name]}")
    return "a value " + " and ".join(parts)


def _convert_dataclass(value: Any, cls: type[Any], key: str, problems: list[Problem]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(Problem(key, value, _type_name(cls)))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in value:
        if name not in fields:
            sub = f"{key}.{name}" if key else str(name)
            problems.append(Problem(sub, value[name], ", ".join(fields), "unknown key"))
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for name, f in fields.items():
        if name not in value:
            continue
        sub = f"{key}.{name}" if key else name
        n = len(problems)
        converted = _convert(value[name], hints[name], sub, problems)
        if len(problems) == n:
            _check_field(converted, f, sub, problems)
        kwargs[name] = converted
    if len(problems) > before:
        return None
    try:
        instance = cls(**kwargs)
    except ValueError as exc:  # cross-field checks in __post_init__
        problems.append(Problem(key, dict(value), str(exc), "invalid"))
        return None
    return instance


def apply_overrides(cfg: T, overrides: Sequence[str], schema: type[T]) -> T:
    """``cfg`` with ``KEY=VALUE`` overrides (dotted keys, YAML values), validated like a file.

    Example: ``["epochs=2", "optimizer.learning_rate=1e-4", "augmentation.resolutions=[[64,128]]"]``.

    Raises:
        ConfigError: a malformed override, an unknown key, a wrong type or an out-of-range
            value (every problem listed; the source is ``--set``).
    """
    data = config_to_dict(cfg)
    problems: list[Problem] = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(text, text, "KEY=VALUE", "invalid"))
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            problems.append(Problem(key, raw, "a YAML value", "invalid"))
            continue
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as text; on a command line it means the number
            with contextlib.suppress(ValueError):
                value = float(value)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                node = None
                break
            node = child
        if not isinstance(node, dict) or parts[-1] not in node:
            problems.append(Problem(key, raw, "a key of the schema", "unknown key"))
            continue
        node[parts[-1]] = value
    if problems:
        raise ConfigError("--set", problems)
    return config_from_dict(data, schema, source="--set")
