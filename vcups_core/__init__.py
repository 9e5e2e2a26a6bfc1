"""vcups core library: unsupervised video panoptic segmentation without ROS.

Nothing in this package imports rclpy or ROS message packages; the ROS 2 layer (``vcups_ros``)
depends on it, never the other way round.
"""

__version__ = "0.1.0"
