"""``vcups demo``: the largest slice of the pipeline that works today, on a built-in clip.

The network, pseudo-labels and tracker are not built yet, so the panoptic frames are the clip's
ground truth; everything around them is the real code path:

1. every default config in ``config/`` is loaded and validated;
2. a clip is rendered by the synthetic driving world (or read from a DAVIS-style folder:
   ``images/*.jpg`` + ``masks/*.png``, the object as one tracked thing, the rest void) and
   recorded as a rosbag2 (MCAP) with the camera and ground-truth topics;
3. the camera topic is read back from the bag as a robot recording would be;
4. each frame's panoptic ground truth becomes a ``vcups_ros/PanopticTrackArray`` (plus one
   ``PanopticInfo``) written to a second bag, as ``vcups replay`` will;
5. that bag is read by an independent reader (``mcap_ros2``) and compared with what was written;
6. the camera frames are extracted to PNG with an index (``vcups extract``), and an overlay of the
   last frame is saved.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.config import load_config
from vcups_core.configs import SCHEMAS
from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.extract import extract_frames
from vcups_core.data.rosbag import GT_TOPICS, BagFrameReader, BagWriter, write_synthetic_bag
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.rosmsg import msg_type
from vcups_core.types import IGNORE_LABEL, MAX_SEGMENTS, VOID_SEGMENT, PanopticFrame
from vcups_core.viz.palette import default_palette
from vcups_ros import conversions as conv

REPO = Path(__file__).resolve().parent.parent
CAMERA = "/camera/image_raw"
FRAME_PERIOD_NS = 100_000_000  # 10 Hz for DAVIS clips
MAX_COLOURS = 64
Labels = list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]


def record_synthetic(bag: Path, num_frames: int = 12) -> tuple[Labels, list[str], list[bool]]:
    """Render a synthetic clip into ``bag``; returns its (semantic, track ids) and classes."""
    world = SyntheticWorld(height=256, width=512, num_frames=num_frames, seed=0)
    write_synthetic_bag(world, bag)
    labels: Labels = [(f.semantic, f.instance.astype(np.int64)) for f in world.frames()]
    return labels, list(cs.CLASS_NAMES), [i in cs.THING_IDS for i in range(len(cs.CLASS_NAMES))]


def record_davis(
    clip_dir: Path, bag: Path, max_frames: int = 12
) -> tuple[Labels, list[str], list[bool]]:
    """Record a DAVIS-2016 clip into ``bag``: the object is thing 0 with track 1, the rest void."""
    images = sorted((clip_dir / "images").glob("*.jpg"))[:max_frames]
    if not images:
        raise FileNotFoundError(f"{clip_dir / 'images'}: no *.jpg frames")
    labels: Labels = []
    with BagWriter(bag, "mcap") as writer:
        for i, img_path in enumerate(images):
            mask_path = clip_dir / "masks" / (img_path.stem + ".png")
            bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
            if bgr is None or mask is None:
                raise FileNotFoundError(f"cannot read {img_path} or {mask_path}")
            stamp = (i + 1) * FRAME_PERIOD_NS
            fg = mask > 127
            semantic = np.where(fg, 0, IGNORE_LABEL).astype(np.uint8)
            writer.write_rgb(CAMERA, np.ascontiguousarray(bgr[:, :, ::-1]), stamp, "camera", "bgr8")
            writer.write_array(GT_TOPICS["semantic"], semantic, "mono8", stamp, "camera")
            labels.append((semantic, fg.astype(np.int64)))
    return labels, ["object"], [True]


def overlay(
    rgb: npt.NDArray[np.uint8], frame: PanopticFrame, num_classes: int
) -> npt.NDArray[np.uint8]:
    """Blend segment colours (by track for things, by class for stuff) over the image."""
    palette = default_palette(MAX_COLOURS)
    lut = np.zeros((MAX_SEGMENTS + 1, 3), np.uint8)
    for seg in frame.segments:
        key = seg.track_id + num_classes if seg.is_thing else seg.category_id
        lut[seg.segment_id] = palette[key % MAX_COLOURS]
    void = frame.segment_ids == VOID_SEGMENT
    out = ((rgb.astype(np.uint16) + lut[frame.segment_ids]) // 2).astype(np.uint8)
    out[void] = rgb[void]
    return out


def run_demo(out_dir: Path, clip_dir: Path | None = None) -> int:
    """Run the demo; returns 0 when everything read back equals what was written."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    print(
        "vcups demo: the network, pseudo-labels and tracker are not built yet, so the panoptic "
        "frames are ground truth; the rest is the real path: configs -> camera bag -> frames -> "
        "PanopticTrackArray bag -> independent read-back -> extraction."
    )
    for kind, (schema, rel) in SCHEMAS.items():
        load_config(REPO / "config" / rel, schema)
        print(f"  config {kind:14s} config/{rel}: valid")

    if out_dir.exists():
        for name in ("camera_bag", "panoptic_bag", "frames"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    camera_bag = out_dir / "camera_bag"
    if clip_dir is None:
        labels, names, is_thing = record_synthetic(camera_bag)
        source = "synthetic driving world (seed 0)"
    else:
        labels, names, is_thing = record_davis(clip_dir, camera_bag)
        source = str(clip_dir)
    things = frozenset(i for i, t in enumerate(is_thing) if t)

    frames = list(BagFrameReader(camera_bag, CAMERA))
    print(
        f"  camera bag {camera_bag}: {len(frames)} frames of {frames[0].width}x{frames[0].height} "
        f"from the {source}"
    )

    conv_types = conv.MessageTypes.rosbags()
    panoptic_bag = out_dir / "panoptic_bag"
    panoptic: list[PanopticFrame] = []
    with BagWriter(panoptic_bag, "mcap") as writer:
        writer.write(
            "/panoptic/info",
            conv.panoptic_info_msg(
                conv_types,
                version=1,
                category_names=names,
                category_is_thing=is_thing,
                model_name="ground-truth",
                stamp_ns=frames[0].stamp_ns,
            ),
            frames[0].stamp_ns,
        )
        for i, (frame, (semantic, track_ids)) in enumerate(zip(frames, labels, strict=True)):
            result = PanopticFrame.from_maps(
                semantic,
                track_ids,
                things,
                stamp_ns=frame.stamp_ns,
                frame_id=frame.frame_id,
                frame_index=i,
            )
            panoptic.append(result)
            writer.write(
                "/panoptic/tracks", conv.panoptic_frame_to_msg(result, conv_types), frame.stamp_ns
            )

    counts: Counter[str] = Counter()
    mismatches = 0
    expected = iter(panoptic)
    with next(panoptic_bag.glob("*.mcap")).open("rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for msg_schema, channel, _, ros_msg in reader.iter_decoded_messages():
            counts[channel.topic] += 1
            if msg_schema is not None and msg_schema.name == msg_type("PanopticTrackArray"):
                want = next(expected)
                back, _ = conv.msg_to_panoptic_frame(ros_msg)
                mismatches += not (
                    np.array_equal(back.segment_ids, want.segment_ids)
                    and back.segments == want.segments
                    and back.stamp_ns == want.stamp_ns
                )
    for topic, n in sorted(counts.items()):
        print(f"  panoptic bag read back with mcap_ros2: {topic:17s} {n} messages")

    extraction = extract_frames(camera_bag, CAMERA, out_dir / "frames", progress=False)
    print(
        f"  extracted {extraction.total} frames to {extraction.out_dir} (PNG per stamp, index.csv)"
    )

    last = panoptic[-1]
    n_things = sum(s.is_thing for s in last.segments)
    print(
        f"  last frame: {len(last)} segments ({n_things} tracked things), "
        f"{int((last.semantic == IGNORE_LABEL).sum())} void pixels"
    )
    overlay_path = out_dir / "overlay_last_frame.png"
    cv2.imwrite(str(overlay_path), overlay(frames[-1].image, last, len(names))[:, :, ::-1])
    print(f"  overlay: {overlay_path}")
    if mismatches:
        print(f"vcups demo: FAILED, {mismatches} messages differ from what was written")
        return 1
    print("vcups demo: ok, every message read back equals what was written")
    return 0
