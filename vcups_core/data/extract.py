"""Extract the frames of a bag's image topic into a folder for training.

Layout written under ``out_dir``::

    frames/<stamp_ns>.png   lossless RGB frames, named by header stamp (19-digit nanoseconds)
    index.csv               stamp_ns, frame_index, file, bag, topic - one row per frame, by stamp
    source.json             bag (absolute path), topic, range, stride: what the folder holds
    extraction.json         bag, topic, range, stride, frame count, gaps and backward stamps

Resumable: the same command run again after Ctrl-C, SIGTERM or SIGKILL finishes the job. A frame
whose PNG is complete (:func:`~vcups_core.jobs.is_complete_png`: every chunk and CRC, ``IEND``
last) is not decoded or written again; an empty, cut or damaged PNG is written again. Every file
is written to a temporary name and renamed, temporaries of a killed run are removed, and the
index is rebuilt from all extracted frames at the end of each run. A folder holds the frames of
one source: ``source.json`` is written before the first frame, and a run with another bag, topic,
range or stride is refused. While a run works on a folder it holds a lock on it, so a second run
on the same folder fails at once.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import cv2

from vcups_core.data.rosbag import BagFrameReader, FrameGap
from vcups_core.jobs import atomic_write_bytes as _atomic_write_bytes
from vcups_core.jobs import (
    atomic_write_json,
    hold_folder,
    is_complete_png,
    remove_temp_files,
    terminate_as_interrupt,
)
from vcups_core.jobs import atomic_write_text as _atomic_write_text

INDEX_FIELDS = ("stamp_ns", "frame_index", "file", "bag", "topic")
SOURCE_FIELDS = ("bag", "topic", "start_ns", "stop_ns", "stride")
"""What ``source.json`` records; a resumed run must match every field."""


@dataclasses.dataclass(frozen=True)
class ExtractionResult:
    """What one :func:`extract_frames` run did."""

    out_dir: Path
    written: int
    skipped: int
    total: int
    gaps: tuple[FrameGap, ...]


def extract_frames(
    bag: Path,
    topic: str,
    out_dir: Path,
    *,
    start_ns: int | None = None,
    stop_ns: int | None = None,
    stride: int = 1,
    progress: bool = True,
) -> ExtractionResult:
    """Write every ``stride``-th frame of ``topic`` in ``[start_ns, stop_ns)`` as PNG plus an index.

    SIGTERM is handled like Ctrl-C (:class:`KeyboardInterrupt`): the index then lists the frames
    written so far and the same call later finishes the job.

    Raises:
        FileNotFoundError, ValueError, BagReadError: as :class:`BagFrameReader` (missing bag or
            topic, damaged file). Frames extracted before damage stay on disk and in the index.
        ValueError: ``out_dir`` holds frames of another source (bag, topic, range or stride), or
            frames without a source record.
        OutputPathError: ``out_dir`` cannot be created, or another run is writing it.
    """
    with terminate_as_interrupt():
        reader = BagFrameReader(bag, topic, start_ns=start_ns, stop_ns=stop_ns, stride=stride)
        source: dict[str, object] = {
            "bag": str(Path(bag).resolve()),
            "topic": topic,
            "start_ns": start_ns,
            "stop_ns": stop_ns,
            "stride": stride,
        }
        with hold_folder(Path(out_dir), "vcups extract"):
            return _extract(reader, Path(bag), topic, Path(out_dir), source, progress)


def check_source(out_dir: Path, source: dict[str, object]) -> None:
    """Make sure ``out_dir`` holds frames of ``source`` or none; record ``source`` if new.

    The record is ``source.json``; a folder from before it existed is judged by its
    ``extraction.json``.

    Raises:
        ValueError: the folder belongs to another source, or holds frames of an unknown source.
    """
    record: dict[str, object] | None = None
    for name in ("source.json", "extraction.json"):
        try:
            loaded = json.loads((out_dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{out_dir / name}: unreadable ({exc}); remove it or choose another --out"
            ) from None
        if isinstance(loaded, dict):
            record = {k: loaded.get(k) for k in SOURCE_FIELDS}
            record["bag"] = str(Path(str(loaded.get("bag"))).resolve())
        break
    if record is None:
        frames = out_dir / "frames"
        if frames.is_dir() and any(p.suffix == ".png" for p in frames.iterdir()):
            raise ValueError(
                f"{out_dir}: holds frames of an unknown source (no source.json); "
                "remove it or choose another --out"
            )
        atomic_write_json(out_dir / "source.json", source)
        return
    if record != source:
        differ = ", ".join(
            f"{k} {record[k]!r} (asked: {source[k]!r})"
            for k in SOURCE_FIELDS
            if record[k] != source[k]
        )
        raise ValueError(
            f"{out_dir}: holds frames of another source ({differ}); "
            "choose another --out or remove it"
        )
    if not (out_dir / "source.json").exists():
        atomic_write_json(out_dir / "source.json", source)


def _extract(
    reader: BagFrameReader,
    bag: Path,
    topic: str,
    out_dir: Path,
    source: dict[str, object],
    progress: bool,
) -> ExtractionResult:
    from tqdm import tqdm

    start_ns, stop_ns, stride = reader.start_ns, reader.stop_ns, reader.stride
    check_source(out_dir, source)
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    remove_temp_files(frames_dir)  # a killed run's; this run holds the folder's lock
    remove_temp_files(out_dir)
    rows: list[dict[str, object]] = []
    written = skipped = 0
    total = -(-reader.count // stride) if reader.count else None
    try:
        for message in tqdm(
            reader.messages(), total=total, desc="extract", unit="frame", disable=not progress
        ):
            name = f"{message.stamp_ns:019d}.png"
            target = frames_dir / name
            if is_complete_png(target):
                skipped += 1
            else:
                rgb = message.frame().image
                ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
                if not ok:  # pragma: no cover - PNG encoding of uint8 RGB does not fail
                    raise RuntimeError(f"could not encode {target}")
                _atomic_write_bytes(target, buf.tobytes())
                written += 1
            rows.append(
                {
                    "stamp_ns": message.stamp_ns,
                    "frame_index": message.index,
                    "file": f"frames/{name}",
                    "bag": str(bag),
                    "topic": topic,
                }
            )
    finally:
        _write_index(Path(out_dir), rows)
    gaps = tuple(reader.gaps())
    summary: dict[str, object] = {
        "bag": str(bag),
        "topic": topic,
        "start_ns": start_ns,
        "stop_ns": stop_ns,
        "stride": stride,
        "frames": len(rows),
        "written": written,
        "skipped": skipped,
        "stamps_backwards": reader.backwards,
        "gaps": [dataclasses.asdict(g) for g in gaps],
        "incomplete": reader.incomplete,
    }
    _atomic_write_text(Path(out_dir) / "extraction.json", json.dumps(summary, indent=2) + "\n")
    return ExtractionResult(Path(out_dir), written, skipped, len(rows), gaps)


def _write_index(out_dir: Path, rows: list[dict[str, object]]) -> None:
    """Merge ``rows`` with an existing index (earlier runs) and write it sorted by stamp."""
    index = out_dir / "index.csv"
    merged: dict[str, dict[str, object]] = {}
    if index.exists():
        with index.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                merged[row["file"]] = dict(row)
    for row in rows:
        merged[str(row["file"])] = row
    lines = sorted(merged.values(), key=lambda r: int(str(r["stamp_ns"])))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=INDEX_FIELDS)
    writer.writeheader()
    writer.writerows(lines)
    _atomic_write_text(index, text.getvalue())
