"""Replay a bag through the node: `ros2 launch vcups_ros replay.launch.py bag:=/path/to/bag`.

Starts the perception node with ``use_sim_time`` and plays the bag with ``ros2 bag play --clock``.
For a deterministic, frame-by-frame replay without ROS running use ``vcups replay`` instead.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from vcups_ros.launch_helpers import node_arguments


def _actions(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    return [
        Node(
            **node_arguments(
                params_file=value("params_file"),
                image_topic=value("image"),
                use_sim_time=True,
                checkpoint=value("checkpoint"),
            )
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", value("bag"), "--clock", "--rate", value("rate")],
            output="screen",
        ),
    ]


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory("vcups_ros"), "config", "perception.yaml"
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 folder to play"),
            DeclareLaunchArgument(
                "image", default_value="/camera/image_raw", description="camera topic"
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="the network (overrides model.checkpoint of params_file)",
            ),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="node parameters"
            ),
            OpaqueFunction(function=_actions),
        ]
    )
