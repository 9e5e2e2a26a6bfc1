"""Online streaming: predictor -> causal tracker -> causal semantic smoother -> PanopticFrame.

No ROS in here: the node (``vcups_ros``) and ``vcups replay`` both drive
:class:`~vcups_core.streaming.segmenter.StreamingSegmenter`.
"""
