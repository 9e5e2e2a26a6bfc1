"""pip installation of vcups (no ROS needed): ``vcups_core``, ``vcups_ros``, ``training``.

ROS users build the same sources with ``colcon build`` (CMakeLists.txt), which also generates the
messages; keep CONSOLE_SCRIPTS in step with the ``install(PROGRAMS ...)`` list there
(tests/test_packaging.py checks it).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

CONSOLE_SCRIPTS = [
    "vcups = training.cli:main",
    "perception_node = vcups_ros.perception_node:main",
]

setup(
    name="vcups",
    version="0.1.0",
    description="Unsupervised video panoptic segmentation for robots (VideoCUPS) with ROS 2",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vcups_core", "vcups_core.*", "vcups_ros", "training"]),
    package_data={"vcups_core": ["py.typed"]},
    data_files=[
        ("share/vcups_ros", ["package.xml"]),
        ("share/vcups_ros/msg", sorted(str(p.relative_to(HERE)) for p in HERE.glob("msg/*.msg"))),
        (
            "share/vcups_ros/config",
            sorted(str(p.relative_to(HERE)) for p in HERE.glob("config/*.yaml")),
        ),
        (
            "share/vcups_ros/launch",
            sorted(str(p.relative_to(HERE)) for p in HERE.glob("launch/*.py")),
        ),
        (
            "share/vcups_ros/rviz",
            sorted(str(p.relative_to(HERE)) for p in HERE.glob("rviz/*.rviz")),
        ),
        (
            "share/vcups_ros/config/model",
            sorted(str(p.relative_to(HERE)) for p in HERE.glob("config/model/*.yaml")),
        ),
    ],
    install_requires=[
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "scipy>=1.11",
        "pyyaml>=6",
        "rosbags>=0.11,<0.12",
        "rosbags-image>=0.10",
        "mcap>=1.1",
        "mcap-ros2-support>=0.5",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
        "pycocotools>=2.0.7",
        "matplotlib>=3.7",
        "torch>=2.2",
        "torchvision>=0.17",
        "kornia>=0.7",
        "tensorboard>=2.14",
    ],
    extras_require={"export": ["onnx>=1.15", "onnxruntime>=1.17"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
