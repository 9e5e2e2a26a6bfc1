"""Run vcups on a robot camera: `ros2 launch vcups_ros perception.launch.py image:=/front/image_raw`.

Arguments: ``image`` (camera topic), ``checkpoint`` (the network: a ``.pt`` from ``vcups train``,
or an ``.onnx``/``.engine`` with the backend set in the parameter file; overrides
``model.checkpoint``), ``namespace`` (one node per camera), ``params_file`` (default: the
package's config/perception.yaml), ``use_sim_time``. All node logic lives in
``vcups_ros.launch_helpers.node_arguments`` (tested without ``launch``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from vcups_ros.launch_helpers import node_arguments


def _node(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    return [
        Node(
            **node_arguments(
                params_file=value("params_file"),
                image_topic=value("image"),
                namespace=value("namespace"),
                use_sim_time=value("use_sim_time").lower() in ("true", "1"),
                checkpoint=value("checkpoint"),
            )
        )
    ]


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory("vcups_ros"), "config", "perception.yaml"
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "image", default_value="/camera/image_raw", description="camera topic"
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="the network (overrides model.checkpoint of params_file)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="one node per camera"),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="node parameters"
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="true for bag replay"
            ),
            OpaqueFunction(function=_node),
        ]
    )
