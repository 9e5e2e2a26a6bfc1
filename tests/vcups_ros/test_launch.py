"""Launch files: their logic is a tested pure function; the files themselves must compile."""

from __future__ import annotations

import ast

import pytest
import yaml
from conftest import REPO

from vcups_core.configs.node import NodeConfig
from vcups_ros.launch_helpers import node_arguments
from vcups_ros.params import check_update, default_parameters, flatten, unflatten


def test_node_arguments_remap_the_camera_and_pass_parameters() -> None:
    args = node_arguments(
        params_file="/p.yaml", image_topic="/front/image_raw", namespace="front", use_sim_time=True
    )
    assert args["package"] == "vcups_ros" and args["executable"] == "perception_node"
    assert args["namespace"] == "front"
    assert args["parameters"] == ["/p.yaml", {"use_sim_time": True}]
    assert args["remappings"] == [
        ("image", "/front/image_raw"),
        ("image/compressed", "/front/image_raw/compressed"),
    ]
    with pytest.raises(ValueError, match="image_topic"):
        node_arguments(params_file="/p.yaml", image_topic="")


def test_checkpoint_argument_overrides_the_parameter_file() -> None:
    args = node_arguments(params_file="/p.yaml", checkpoint="/runs/r1/model_final.pt")
    # later parameter entries override earlier ones in launch_ros: the file first, then ours
    assert args["parameters"] == [
        "/p.yaml",
        {"use_sim_time": False, "model.checkpoint": "/runs/r1/model_final.pt"},
    ]


@pytest.mark.parametrize("name", ["perception.launch.py", "replay.launch.py"])
def test_launch_files_compile_and_use_the_helper(name: str) -> None:
    source = (REPO / "launch" / name).read_text()
    tree = ast.parse(source)
    compile(tree, name, "exec")
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    assert "node_arguments(" in source
    assert '"checkpoint"' in source and 'checkpoint=value("checkpoint")' in source


def test_rviz_config_shows_the_overlay_and_markers() -> None:
    cfg = yaml.safe_load((REPO / "rviz" / "perception.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"]}
    assert topics == {"/panoptic/overlay", "/panoptic/markers"}


def test_parameter_flattening_round_trips_and_matches_the_yaml() -> None:
    params = default_parameters()
    assert params["streaming.tracker.match_coeffs"] == [1.0, 2.0, 10.0]
    assert unflatten(flatten({"a": {"b": (1, 2)}, "c": 3})) == {"a": {"b": [1, 2]}, "c": 3}
    ros = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"][
        "ros__parameters"
    ]
    assert flatten(ros) == params


def test_check_update_rules() -> None:
    cfg = NodeConfig()
    new, reason = check_update(cfg, {"streaming.tracker.max_age": 5}, configured=True)
    assert new is not None and new.streaming.tracker.max_age == 5 and reason == ""
    new, reason = check_update(cfg, {"model.device": "cuda"}, configured=True)
    assert new is None and "model.device takes effect only through the lifecycle" in reason
    new, reason = check_update(cfg, {"model.device": "cuda"}, configured=False)
    assert new is not None and new.model.device == "cuda"
    new, reason = check_update(cfg, {"nope": 1}, configured=False)
    assert new is None and "unknown parameter(s) nope" in reason
