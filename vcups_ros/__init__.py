"""ROS 2 layer of vcups: the perception node, its parameters and the rclpy message classes.

Message conversions are ROS-free and live in :mod:`vcups_core.rosmsg`; ``vcups replay`` is in
``training`` (it needs no ROS).

The message classes ``vcups_ros.msg.*`` are generated from ``msg/`` by ``colcon build`` (or by
``make setup``) and installed as part of this same Python package. The path of this package is
extended over every ``vcups_ros`` directory on ``sys.path``, so the generated ``msg`` subpackage
is found next to these sources whether they were installed together (a colcon install) or apart
(a development checkout whose messages were built into the virtual environment).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
