"""What every long job shares: atomic outputs, shards of the work, locks and signal handling.

Used by ``vcups extract``, ``replay``, ``synth``, ``evaluate``, the pseudo-label and the training
jobs, so that all of them behave the same way when interrupted and re-run:

* **Atomic outputs.** :func:`atomic_write_bytes` (and its text, JSON and PNG variants) writes to a
  temporary file in the target's folder (``.<name>.<pid>.<random>.tmp``), flushes and ``fsync``\\ s
  it, then renames it over the target with :func:`os.replace`. A reader sees the old file or the
  new one, never a half-written one, even after SIGKILL or a power cut. On an exception the
  temporary file is removed; after SIGKILL it stays behind under its hidden ``.tmp`` name, which
  every reader ignores and the job's next run cleans up.
* **Shards.** ``--shard I/N`` (:func:`parse_shard`) or torchrun's ``RANK``/``WORLD_SIZE``
  (:func:`shard_from_env`) select items round-robin by position (:func:`select_shard`), so a
  sharded run does exactly the work of an unsharded one, split into disjoint parts.
* **Signals.** :func:`terminate_as_interrupt` makes SIGTERM (``kill``, a batch scheduler, a
  container stop) raise :class:`KeyboardInterrupt` like Ctrl-C, so the same clean-up runs.
* **Locks.** :func:`file_lock` serialises a short critical section between processes (e.g. the
  shards that each rebuild a shared manifest at their end).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

T = TypeVar("T")

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary files of :func:`atomic_write_bytes` (their names also start with a dot)."""


def temp_name_prefix(path: Path) -> str:
    """Start of the names of :func:`atomic_write_bytes`'s temporary files for ``path``.

    A job that cleans up after a killed run removes the files in ``path.parent`` whose names start
    with this prefix and end with :data:`TMP_SUFFIX`.
    """
    return f".{Path(path).name}."


def is_temp_file(name: str) -> bool:
    """True if ``name`` (a file name, no folder) looks like a temporary file of this module."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename).

    The folder must exist. The file gets the usual permissions (``0o666`` minus the umask).

    Raises:
        OSError: the folder is missing or not writable, the disk is full, ...; ``path`` is then
            unchanged and no temporary file is left.
    """
    path = Path(path)
    tmp = path.with_name(
        f"{temp_name_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (keys in insertion order, trailing newline) to ``path`` atomically.

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written).
        OSError: as :func:`atomic_write_bytes`.
    """
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def encode_png(array: npt.NDArray[Any]) -> bytes:
    """Lossless PNG of a label map or an image.

    Args:
        array: ``uint8[H, W]`` or ``uint16[H, W]`` (single channel, written as 8- or 16-bit
            grey), or ``uint8[H, W, 3]`` RGB (written as a colour PNG).

    Raises:
        ValueError: any other dtype or shape, or an empty array.
    """
    a = np.asarray(array)
    if a.ndim == 2 and a.dtype in (np.uint8, np.uint16):
        pixels = a
    elif a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        pixels = a[:, :, ::-1]  # OpenCV writes BGR
    else:
        raise ValueError(
            f"PNG: expected uint8[H, W], uint16[H, W] or uint8[H, W, 3] RGB, got {a.dtype}{list(a.shape)}"
        )
    if a.size == 0:
        raise ValueError(f"PNG: empty array {list(a.shape)}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:  # pragma: no cover - encoding uint8/uint16 arrays does not fail
        raise RuntimeError(f"PNG encoding failed for {a.dtype}{list(a.shape)}")
    return bytes(buf.tobytes())


def atomic_write_png(path: Path, array: npt.NDArray[Any]) -> None:
    """Write ``array`` as a lossless PNG to ``path`` atomically.

    Args:
        path: target file (its folder must exist).
        array: ``uint8[H, W]`` / ``uint16[H, W]`` single channel, or ``uint8[H, W, 3]`` RGB.

    Raises:
        ValueError: unsupported dtype or shape (nothing is written).
        OSError: as :func:`atomic_write_bytes`.
    """
    atomic_write_bytes(path, encode_png(array))


def remove_temp_files(folder: Path, prefix: str = ".") -> int:
    """Delete the temporary files a killed writer left in ``folder`` (not recursive).

    Only call it where no other process is writing the same names at the same time.

    Args:
        folder: where to look; a missing folder is fine.
        prefix: only names starting with it (e.g. :func:`temp_name_prefix` of one target).

    Returns:
        How many files were removed.
    """
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and is_temp_file(entry.name) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) for the ``with`` block.

    Blocks until the lock is free. The lock is released when the block ends or the process dies
    (also by SIGKILL), so a killed job never leaves a stale lock.

    Raises:
        OSError: the lock file cannot be created or opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` in the main thread like Ctrl-C.

    The previous SIGTERM handler is restored when the block ends. Outside the main thread (where
    Python cannot install signal handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def check_shard(index: int, count: int) -> tuple[int, int]:
    """Validate a shard ``(index, count)``: ``count >= 1`` and ``0 <= index < count``.

    Raises:
        ValueError: naming the shard and what is allowed.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"shard {index}/{count}: expected I/N with N >= 1 and 0 <= I < N (e.g. 0/4 ... 3/4)"
        )
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (shard ``I`` of ``N``, 0-based) into ``(I, N)``.

    Raises:
        ValueError: not of the form ``I/N`` with integers ``0 <= I < N``.
    """
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(f"shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return check_shard(int(match.group(1)), int(match.group(2)))


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """The shard of this process under ``torchrun``: ``(RANK, WORLD_SIZE)``, or None without them.

    Args:
        env: the environment to read (default ``os.environ``).

    Raises:
        ValueError: only one of ``RANK``/``WORLD_SIZE`` is set, or they are not a valid shard.
    """
    env = os.environ if env is None else env
    rank, world = env.get("RANK"), env.get("WORLD_SIZE")
    if rank is None and world is None:
        return None
    if rank is None or world is None:
        raise ValueError(
            f"RANK={rank!r} and WORLD_SIZE={world!r}: set both (torchrun does) or neither"
        )
    try:
        return check_shard(int(rank), int(world))
    except ValueError:
        raise ValueError(
            f"RANK={rank!r}, WORLD_SIZE={world!r}: expected integers with 0 <= RANK < WORLD_SIZE"
        ) from None


def select_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """The items of shard ``index`` of ``count``: round-robin by position, ``items[index::count]``.

    The shards of ``0..count-1`` are disjoint and together hold every item once.

    Raises:
        ValueError: an invalid shard (see :func:`check_shard`).
    """
    check_shard(index, count)
    return list(items[index::count])
