"""Extract the frames of a bag's image topic into a folder for training.

Layout written under ``out_dir``::

    frames/<stamp_ns>.png   lossless RGB frames, named by header stamp (19-digit nanoseconds)
    index.csv               stamp_ns, frame_index, file, bag, topic - one row per frame, by stamp
    extraction.json         bag, topic, range, stride, frame count, gaps and backward stamps

Resumable: a frame whose PNG exists is not decoded or written again, every file is written to a
temporary name and renamed (an interrupted run never leaves a half-written PNG or index), and the
index is rebuilt from all extracted frames at the end of each run.
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
from vcups_core.jobs import atomic_write_text as _atomic_write_text

INDEX_FIELDS = ("stamp_ns", "frame_index", "file", "bag", "topic")


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

    Raises:
        FileNotFoundError, ValueError, BagReadError: as :class:`BagFrameReader` (missing bag or
            topic, damaged file). Frames extracted before damage stay on disk and in the index.
    """
    from tqdm import tqdm

    reader = BagFrameReader(bag, topic, start_ns=start_ns, stop_ns=stop_ns, stride=stride)
    frames_dir = Path(out_dir) / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    written = skipped = 0
    total = -(-reader.count // stride) if reader.count else None
    try:
        for message in tqdm(
            reader.messages(), total=total, desc="extract", unit="frame", disable=not progress
        ):
            name = f"{message.stamp_ns:019d}.png"
            target = frames_dir / name
            if target.exists():
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
    summary = {
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
