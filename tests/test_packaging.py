"""The ROS package and the pip package describe the same thing."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from catkin_pkg.package import parse_package
from conftest import REPO


def cmake_text() -> str:
    return (REPO / "CMakeLists.txt").read_text()


def console_scripts() -> dict[str, str]:
    """name -> 'module:function' from CONSOLE_SCRIPTS in setup.py (read without running it)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONSOLE_SCRIPTS":
            entries = ast.literal_eval(node.value)
            return dict(tuple(p.strip() for p in e.split("=", 1)) for e in entries)
    raise AssertionError("setup.py defines no CONSOLE_SCRIPTS")


def cmake_programs() -> list[str]:
    block = re.search(
        r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake_text(), re.S
    )
    assert block, "CMakeLists.txt installs no PROGRAMS into lib/${PROJECT_NAME}"
    return block.group(1).split()


def test_package_xml_validates_with_catkin_pkg() -> None:
    pkg = parse_package(str(REPO))
    pkg.validate()
    assert pkg.name == "vcups_ros"
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]
    assert re.search(r"project\(vcups_ros\)", cmake_text())


def test_console_scripts_and_cmake_programs_agree() -> None:
    scripts = console_scripts()
    programs = cmake_programs()
    assert sorted(Path(p).name for p in programs) == sorted(scripts)
    for program in programs:
        path = REPO / program
        assert path.is_file(), f"{program} does not exist"
        assert path.stat().st_mode & 0o111, f"{program} is not executable"
        module, func = scripts[path.name].split(":")
        assert f"from {module} import {func}" in path.read_text(), (
            f"{program} does not call {module}:{func}"
        )


def test_messages_in_cmake_match_msg_folder_and_dependencies() -> None:
    text = cmake_text()
    listed = sorted(re.findall(r'"(msg/\w+\.msg)"', text))
    assert listed == sorted(f"msg/{p.name}" for p in (REPO / "msg").glob("*.msg"))
    deps = re.search(r"DEPENDENCIES ([\w ]+)\n", text)
    assert deps
    pkg = parse_package(str(REPO))
    declared = {d.name for d in pkg.build_depends} | {d.name for d in pkg.exec_depends}
    assert set(deps.group(1).split()) <= declared
    used = set()
    for path in (REPO / "msg").glob("*.msg"):
        used |= set(re.findall(r"^(\w+)/\w+", path.read_text(), re.M))
    assert used <= set(deps.group(1).split()), "a .msg uses a package missing from DEPENDENCIES"


def test_share_directories_are_installed_when_present() -> None:
    text = cmake_text()
    assert "foreach(share_dir launch config rviz)" in text
    assert (REPO / "config" / "perception.yaml").is_file()


def test_colcon_finds_one_ament_cmake_package() -> None:
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent))
    assert colcon, "colcon is installed by `make setup`"
    out = subprocess.run(
        [colcon, "list", "--base-paths", str(REPO)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.split() == ["vcups_ros", str(REPO), "(ros.ament_cmake)"]


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert "make demo" in blocks[0]
    assert "make test" in blocks[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
