"""Checks of values a user gives, shared by every entry point that takes them.

Each rule lives here once; the CLI, the node and the library functions call it, so the same
mistake gets the same one-line :class:`ValueError` wherever it is made:

* :func:`check_frame_rate`: a frame rate is a finite number > 0 (``--fps`` of ``vcups synth`` and
  ``vcups replay``'s video).
* :func:`check_device`: a torch device is ``cpu``, ``cuda`` or ``cuda:<i>``, and a CUDA one exists
  on this machine.
* :func:`check_fits_in_memory`: a size the user chose (image size, clip length) does not need
  more memory than the machine has, so it is refused at once instead of failing later with
  ``MemoryError`` or the machine swapping.
* :func:`check_model_file`: a model input (checkpoint, ONNX graph, TensorRT engine) is a non-empty
  regular file, checked before it is opened.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_frame_rate(fps: float, what: str = "--fps") -> float:
    """``fps`` if it is a finite number > 0.

    Raises:
        ValueError: zero, negative, NaN or infinite (naming ``what`` and the value).
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"{what} {fps}: expected a frame rate > 0 (frames per second)")
    return float(fps)


def check_device(device: str, *, need_cuda: bool = True, what: str = "--device") -> torch.device:
    """The torch device ``device`` names, checked before anything is loaded onto it.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:<i>``.
        need_cuda: check that a CUDA device of that index exists (torch's view); False checks
            only the spelling (for a backend with its own fallback).
        what: the setting's name in messages (``--device``, ``model.device``).

    Raises:
        ValueError: another spelling (e.g. ``gpu``, ``cuda0``), or CUDA asked for on a machine
            without a CUDA GPU, or an index past the last GPU.
    """
    import torch

    match = _DEVICE.match(str(device).strip())
    if match is None:
        raise ValueError(f"{what} {device!r}: expected cpu, cuda or cuda:<index> (e.g. cuda:0)")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda" and need_cuda:
        if not torch.cuda.is_available():
            raise ValueError(
                f"{what} {device}: no CUDA GPU is available on this machine (torch sees none); "
                f"use {what} cpu"
            )
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ValueError(
                f"{what} {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    return torch.device(f"{kind}:{index}" if index is not None else kind)


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux/macOS
        return None


def check_fits_in_memory(needed: float, what: str) -> None:
    """Refuse a job that needs ``needed`` bytes of memory when the machine has less.

    Args:
        needed: an estimate of the job's peak memory, in bytes.
        what: what needs it, for the message (e.g. ``"--height 100000 --width 100000"``).

    Raises:
        ValueError: ``needed`` exceeds the machine's physical memory (the message gives both).
    """
    total = memory_bytes()
    if total is not None and needed > total:
        raise ValueError(
            f"{what}: needs about {needed / 2**30:,.1f} GiB of memory, more than this machine's "
            f"{total / 2**30:,.1f} GiB; choose smaller sizes"
        )


def check_model_file(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` if it is a non-empty file: the check every model input (checkpoint, ONNX graph,
    TensorRT engine) gets before it is opened, so a mistake is named in one line.

    Args:
        path: the file.
        what: what names the file, for the message (e.g. ``"model.checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, not a regular file, or empty.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p}: no such file")
    if p.is_dir():
        raise ValueError(f"{what} {p}: is a folder; give the file")
    if not p.is_file():
        raise ValueError(f"{what} {p}: not a regular file")
    if p.stat().st_size == 0:
        raise ValueError(f"{what} {p}: empty file (an interrupted copy or download?)")
    return p
