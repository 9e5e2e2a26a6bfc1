"""Pure functions the launch files call (``launch`` itself is not importable in tests)."""

from __future__ import annotations

from typing import Any

NODE_NAME = "perception_node"
PACKAGE = "vcups_ros"
EXECUTABLE = "perception_node"


def node_arguments(
    *,
    params_file: str,
    image_topic: str = "/camera/image_raw",
    namespace: str = "",
    use_sim_time: bool = False,
    checkpoint: str = "",
    extra_parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``launch_ros.actions.Node`` for one camera's perception node.

    The node subscribes to ``image`` (and ``image/compressed``) relative to its namespace; both are
    remapped to ``image_topic``. Parameters come from ``params_file`` plus ``use_sim_time``; a
    non-empty ``checkpoint`` (the ``checkpoint:=`` launch argument) overrides the file's
    ``model.checkpoint`` (a ``.pt``, ``.onnx`` or ``.engine``; the backend stays the file's).
    """
    if not image_topic:
        raise ValueError("image_topic: expected a topic name, got ''")
    overrides: dict[str, Any] = {"use_sim_time": use_sim_time}
    if checkpoint:
        overrides["model.checkpoint"] = checkpoint
    parameters: list[Any] = [params_file, overrides]
    if extra_parameters:
        parameters.append(dict(extra_parameters))
    return {
        "package": PACKAGE,
        "executable": EXECUTABLE,
        "name": NODE_NAME,
        "namespace": namespace,
        "parameters": parameters,
        "remappings": [("image", image_topic), ("image/compressed", image_topic + "/compressed")],
        "output": "screen",
        "emulate_tty": True,
    }
