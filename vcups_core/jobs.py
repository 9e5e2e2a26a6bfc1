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
  shards that each rebuild a shared manifest at their end); :func:`hold_folder` keeps a second
  run from writing the same output folder at the same time.
* **Staged outputs.** :class:`StagedOutput` writes a whole file or folder (a rosbag2, a video, a
  report) under a hidden temporary folder next to its target and renames it into place at the
  end, so the target holds a finished output or nothing; the next run removes what a killed run
  left behind. :func:`signals_deferred` keeps Ctrl-C/SIGTERM from splitting the final renames.
* **Output paths.** :func:`make_output_folder` and :func:`check_output_file` refuse an output that
  cannot be written (a file in the way, no permission) in one line before the work starts.
* **Checks on resume.** :func:`is_complete_png` tells a finished PNG from an empty or cut one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO, TypeVar

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


def atomic_write_stream(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` atomically with ``write(file)`` (temporary file + fsync + rename), e.g.
    ``atomic_write_stream(p, lambda f: torch.save(obj, f))`` without a copy in memory.

    The folder must exist. The file gets the usual permissions (``0o666`` minus the umask).

    Raises:
        OSError: the folder is missing or not writable, the disk is full, ...; ``path`` is then
            unchanged and no temporary file is left. Whatever ``write`` raises, likewise.
    """
    path = Path(path)
    tmp = path.with_name(
        f"{temp_name_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write_stream`)."""
    atomic_write_stream(path, lambda fh: fh.write(data))


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


class OutputPathError(ValueError):
    """An output path that cannot be used: its folder cannot be created or written, or another
    process is writing it right now. A user's mistake: the message names the path."""


def make_output_folder(folder: Path, target: str | Path | None = None) -> Path:
    """Create ``folder`` (and its parents) for a job's outputs, or say in one line why not.

    Args:
        folder: the folder.
        target: the output that goes into it (e.g. ``"--onnx m.onnx"``), named in the message
            instead of the folder alone.

    Raises:
        OutputPathError: a file is in the way, or the folder cannot be created (permissions, ...).
    """
    folder = Path(folder)
    if target is None:
        what = f"{folder}: cannot create this folder"
    else:
        what = f"{target}: cannot create its folder {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputPathError(f"{what}: a file is in the way") from None
    except OSError as exc:
        raise OutputPathError(f"{what}: {exc.strerror}") from None
    return folder


def check_output_file(path: Path, flag: str) -> Path:
    """Check before a job starts that it can write the file ``path`` (given as ``flag``): its
    folder exists (it is created) and is writable, and ``path`` is not a folder.

    Raises:
        OutputPathError: naming ``flag``, the path and the reason.
    """
    path = Path(path)
    target = f"{flag} {path}"
    make_output_folder(path.parent, target)
    if path.is_dir():
        raise OutputPathError(f"{target}: is a folder; give a file name")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{target}: cannot write in {path.parent}: permission denied")
    return path


def _temp_name(path: Path) -> str:
    return f"{temp_name_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def temp_names_of(path: Path) -> list[Path]:
    """The temporary files and folders of this module for ``path`` (``.<name>.<pid>.<hex>.tmp``).

    Unlike a prefix match, the target ``a`` does not claim the temporaries of ``a.b``.
    """
    path = Path(path)
    pattern = re.compile(
        rf"^{re.escape(temp_name_prefix(path))}(\d+)\.[0-9a-f]+{re.escape(TMP_SUFFIX)}$"
    )
    out: list[Path] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(path.parent):
            if pattern.match(entry.name):
                out.append(Path(entry.path))
    return sorted(out)


def _pid_of(temp: Path) -> int:
    return int(temp.name[: -len(TMP_SUFFIX)].rsplit(".", 2)[-2])


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _try_lock_folder(folder: Path) -> int | None:
    """An fd holding an exclusive lock on ``folder``, or None if another process holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def hold_folder(folder: Path, what: str = "job") -> Iterator[Path]:
    """Create ``folder`` if missing and hold an exclusive lock on it for the ``with`` block.

    For a job that writes many files into one output folder (``vcups extract``): a second run on
    the same folder fails at once instead of interleaving its files. The lock is on the folder
    itself (no lock file is left behind) and is released when the process dies, also by SIGKILL.

    Args:
        folder: the output folder.
        what: the job's name for the error message.

    Raises:
        OutputPathError: the folder cannot be created or opened, or another process holds it.
    """
    folder = make_output_folder(folder)
    try:
        fd = _try_lock_folder(folder)
    except OSError as exc:
        raise OutputPathError(f"{folder}: cannot open this folder: {exc.strerror}") from None
    if fd is None:
        raise OutputPathError(f"{folder}: another {what} is writing this folder right now")
    try:
        yield folder
    finally:
        os.close(fd)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM back for the ``with`` block; they take effect when it ends.

    For short sections that must not be split, such as renaming a job's finished outputs into
    place. Within the block a signal is only recorded; at its end the handlers in force before
    the block are restored and the first recorded signal is handed to its handler (raising
    :class:`KeyboardInterrupt` for Ctrl-C, or under :func:`terminate_as_interrupt` for SIGTERM).
    Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def _record(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, _record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            handler = previous[signal.Signals(caught[0])]
            if callable(handler):
                handler(caught[0], None)
            elif handler != signal.SIG_IGN:  # the default action (SIGTERM: end the process)
                signal.raise_signal(caught[0])


class StagedOutput:
    """A file or folder written under a temporary name next to its target, renamed into place at
    the end: the target holds a finished output or nothing, whatever kills the job.

    The job writes to :attr:`path`, which has the target's own name inside a hidden, locked
    folder ``.<name>.<pid>.<hex>.tmp`` in the target's folder (so a rosbag2 keeps its file names).
    :meth:`commit` renames it over the target; :meth:`discard` removes it. As a context manager
    it opens on entry, commits when the block ends normally and discards on an exception (also
    Ctrl-C; a job that wants to publish a partial result catches the interrupt inside the block).

    Opening removes what a killed run left for the same target (temporary folders no live process
    holds), so re-running a killed job starts clean. An existing target is refused unless
    ``overwrite`` is set or ``replaceable(target)`` says it is an unfinished output.

    Args:
        target: the final path (file or folder).
        overwrite: replace an existing target.
        replaceable: tells whether an existing target may be replaced without ``overwrite``
            (e.g. a bag marked interrupted); called on open and again on commit.

    Raises (on open):
        FileExistsError: the target exists and may not be replaced.
        OutputPathError: the target's folder cannot be created or written, or another process is
            writing the same target.
    """

    def __init__(
        self,
        target: Path,
        *,
        overwrite: bool = False,
        replaceable: Callable[[Path], bool] | None = None,
    ) -> None:
        target = Path(os.path.abspath(target))
        if not target.name:
            raise OutputPathError(f"{target}: not a usable output path")
        self.target = target
        self.overwrite = overwrite
        self.replaceable = replaceable
        self._staging: Path | None = None
        self._lock_fd: int | None = None

    @property
    def path(self) -> Path:
        """Where the job writes the output (the target's name in the staging folder)."""
        if self._staging is None:
            raise RuntimeError(f"{self.target}: staged output not open")
        return self._staging / self.target.name

    def _may_replace(self) -> bool:
        if not os.path.lexists(self.target):
            return True
        return self.overwrite or (self.replaceable is not None and self.replaceable(self.target))

    def open(self) -> Path:
        """Prepare the staging folder and return :attr:`path` (not created: the job creates it)."""
        parent = make_output_folder(self.target.parent, self.target)
        self.remove_leftovers()
        if not self._may_replace():
            raise FileExistsError(
                f"{self.target}: already exists; remove it or choose another path"
            )
        staging = parent / _temp_name(self.target)
        try:
            staging.mkdir()
            fd = _try_lock_folder(staging)
        except OSError as exc:
            raise OutputPathError(
                f"{self.target}: cannot write in {parent}: {exc.strerror}"
            ) from None
        assert fd is not None  # a folder this process just created
        self._staging, self._lock_fd = staging, fd
        return self.path

    def remove_leftovers(self) -> int:
        """Remove the temporaries of killed runs for this target; returns how many.

        Raises:
            OutputPathError: a live process is writing the same target.
        """
        removed = 0
        for temp in temp_names_of(self.target):
            if temp == self._staging:
                continue
            if temp.is_dir() and not temp.is_symlink():
                fd = _try_lock_folder(temp)
                if fd is None:
                    raise OutputPathError(
                        f"{self.target}: another process is writing it right now ({temp.name})"
                    )
                try:
                    shutil.rmtree(temp)
                finally:
                    os.close(fd)
            elif _pid_alive(_pid_of(temp)):
                continue  # a file an atomic write of a live process is writing
            else:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            removed += 1
        return removed

    def commit(self) -> bool:
        """Rename the output over the target (replacing it if allowed) and remove the staging.

        Returns:
            False if the job wrote nothing at :attr:`path` (the target is then left as it was).

        Raises:
            FileExistsError: the target appeared meanwhile and may not be replaced (the output
                is discarded).
        """
        staging = self._staging
        if staging is None:
            raise RuntimeError(f"{self.target}: staged output not open")
        try:
            with signals_deferred():
                if not os.path.lexists(self.path):
                    return False
                if not self._may_replace():
                    raise FileExistsError(
                        f"{self.target}: already exists; remove it or choose another path"
                    )
                if os.path.lexists(self.target):  # move the old one aside, removed below
                    os.rename(self.target, staging / f".replaced{TMP_SUFFIX}")
                os.rename(self.path, self.target)
                _fsync_folder(self.target.parent)
                return True
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the staging folder and what is in it (also a half-written output)."""
        staging, fd = self._staging, self._lock_fd
        self._staging = self._lock_fd = None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> StagedOutput:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._staging is not None:
            self.commit()
        else:
            self.discard()


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_complete_png(path: Path) -> bool:
    """True if ``path`` is a whole PNG: signature, every chunk's length and CRC, ``IEND`` last.

    Reads the file once without decoding pixels; an empty, cut or damaged file gives False (a
    missing one too).
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if not data.startswith(_PNG_SIGNATURE):
        return False
    pos, first = len(_PNG_SIGNATURE), True
    while pos + 12 <= len(data):
        length = int(struct.unpack_from(">I", data, pos)[0])
        end = pos + 12 + length
        if end > len(data):
            return False
        kind = data[pos + 4 : pos + 8]
        if first and kind != b"IHDR":
            return False
        first = False
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return False
        if kind == b"IEND":
            return end == len(data)
        pos = end
    return False


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks: the one file identity of resumable
    runs (checkpoints an evaluation was run with, a DepthG backbone, the demo's step inputs)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
