"""Tests of vcups_core.config: loading, validation messages, and the default files in config/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from training.cli import render_default
from vcups_core.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    describe,
    load_config,
    render_yaml,
    replace,
)
from vcups_core.configs import SCHEMAS, ModelConfig, NodeConfig, TrainingConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_partial_file_loads_over_defaults(tmp_path: Path) -> None:
    text = "streaming:\n  score_threshold: 0.7\n  tracker:\n    max_age: 5\n"
    path = write(tmp_path, text + "    match_coeffs: [1, 2, 3]\n")
    cfg = load_config(path, NodeConfig).streaming
    assert cfg.score_threshold == 0.7
    assert cfg.tracker.max_age == 5
    assert cfg.tracker.match_coeffs == (1.0, 2.0, 3.0)  # ints accepted where floats are expected
    assert cfg.tracker.iou_threshold == NodeConfig().streaming.tracker.iou_threshold
    assert load_config(path, NodeConfig).model == NodeConfig().model


def test_ros_parameter_file_is_unwrapped(tmp_path: Path) -> None:
    path = write(
        tmp_path, "perception_node:\n  ros__parameters:\n    input:\n      transport: compressed\n"
    )
    assert load_config(path, NodeConfig).input.transport == "compressed"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), TrainingConfig) == TrainingConfig()


def problems_of(path: Path, schema: type) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, schema)
    assert str(path) in str(info.value)  # every message names the file
    return str(info.value)


def test_unknown_key_names_path_value_and_allowed_keys(tmp_path: Path) -> None:
    msg = problems_of(write(tmp_path, "streaming:\n  tracker:\n    max_agee: 3\n"), NodeConfig)
    assert "streaming.tracker.max_agee = 3: unknown key (allowed keys: max_age, min_hits," in msg


def test_wrong_type_names_path_value_and_type(tmp_path: Path) -> None:
    msg = problems_of(write(tmp_path, "input:\n  max_pixels: 1.5\nautostart: 'yes'\n"), NodeConfig)
    assert "input.max_pixels = 1.5: wrong type, expected an integer" in msg
    assert "autostart = 'yes': wrong type, expected true or false" in msg


def test_out_of_range_names_bounds(tmp_path: Path) -> None:
    text = "streaming:\n  tracker:\n    iou_threshold: 1.5\n"
    msg = problems_of(write(tmp_path, text), NodeConfig)
    expected = "streaming.tracker.iou_threshold = 1.5: out of range, expected a value >= 0.0 and"
    assert expected + " <= 1.0" in msg


def test_choice_and_tuple_errors(tmp_path: Path) -> None:
    text = "model:\n  backend: tensorflow\nstreaming:\n  tracker:\n    match_coeffs: [1, -2, 3]\n"
    msg = problems_of(write(tmp_path, text), NodeConfig)
    assert "model.backend = 'tensorflow': wrong type, expected one of 'torch', 'onnxruntime'" in msg
    assert "streaming.tracker.match_coeffs[1] = -2.0: out of range, expected a value >= 0.0" in msg


def test_all_problems_are_reported_in_one_error(tmp_path: Path) -> None:
    text = "streaming:\n  score_threshold: 2\n  tracker: 3\nbogus: 1\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), NodeConfig)
    assert len(info.value.problems) == 3
    assert "3 config problems" in str(info.value)
    expected = "streaming.tracker = 3: wrong type, expected a mapping (TrackerSection)"
    assert expected in str(info.value)


def test_cross_field_check(tmp_path: Path) -> None:
    text = "cascade:\n  iou_thresholds: [0.5, 0.6]\n"
    msg = problems_of(write(tmp_path, text), ModelConfig)
    assert "iou_thresholds (2 stages) and bbox_reg_weights (3 stages)" in msg


def test_bad_yaml_duplicate_keys_and_missing_file(tmp_path: Path) -> None:
    assert "valid YAML" in problems_of(write(tmp_path, "a: [1, 2\n"), NodeConfig)
    dup = problems_of(write(tmp_path, "autostart: true\nautostart: false\n"), NodeConfig)
    assert "duplicate key 'autostart'" in dup
    assert "line 2" in dup
    assert "a readable file" in problems_of(tmp_path / "missing.yaml", NodeConfig)


def test_yaml_tags_that_construct_objects_are_refused(tmp_path: Path) -> None:
    text = "autostart: !!python/object/apply:os.system ['true']\n"
    assert "valid YAML" in problems_of(write(tmp_path, text), NodeConfig)


def test_replace_validates() -> None:
    cfg = replace(NodeConfig().streaming, score_threshold=0.25)
    assert cfg.score_threshold == 0.25
    with pytest.raises(ConfigError, match="score_threshold = -1"):
        replace(cfg, score_threshold=-1)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_default_files_are_the_schema_defaults(kind: str) -> None:
    schema, rel = SCHEMAS[kind]
    path = CONFIG_DIR / rel
    assert load_config(path, schema) == schema()
    # The file is exactly what `make config-defaults` writes, so it cannot drift from the code.
    assert path.read_text() == render_default(kind), f"run `make config-defaults` ({rel} drifted)"


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_key_is_commented(kind: str) -> None:
    schema, rel = SCHEMAS[kind]
    key_lines = [
        line
        for line in (CONFIG_DIR / rel).read_text().splitlines()
        if re.match(r"\s*[\w/*]+:", line) and "ros__parameters" not in line and "/**" not in line
    ]
    assert len(key_lines) >= len(describe(schema))
    for line in key_lines:
        assert re.search(r"#\s*\S", line), f"{rel}: key without comment: {line!r}"
    for key, _, help_text in describe(schema):
        assert help_text, f"{kind}.{key} has no help text"


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_render_round_trips(kind: str, tmp_path: Path) -> None:
    schema, _ = SCHEMAS[kind]
    cfg = config_from_dict(config_to_dict(schema()), schema)
    path = write(tmp_path, render_yaml(cfg, ros_node="/**" if kind == "node" else None))
    assert load_config(path, schema) == cfg
