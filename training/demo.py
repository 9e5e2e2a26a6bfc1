"""``vcups demo``: the largest slice of the pipeline that works today, on a built-in clip.

What runs (the network, pseudo-labels and tracker are not built yet, so the demo says so):

1. every default config in ``config/`` is loaded and validated;
2. a clip is made: a built-in moving-objects clip, or a DAVIS-style folder
   (``images/*.jpg`` + ``masks/*.png``) whose object mask becomes one tracked thing (the rest of
   the frame is unlabeled, so void);
3. each frame goes RGB -> ``sensor_msgs/Image`` and its panoptic ground truth goes
   :class:`PanopticFrame` -> ``vcups_ros/PanopticTrackArray``, both serialised to CDR and written
   into a rosbag2 (MCAP) together with a ``PanopticInfo``;
4. the bag is read back with ``mcap_ros2`` (an independent reader), converted back, and compared
   with what was written; an overlay of the last frame is saved as PNG.
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
from vcups_core.rosmsg import msg_type, typestore
from vcups_core.types import IGNORE_LABEL, MAX_SEGMENTS, VOID_SEGMENT, PanopticFrame
from vcups_core.viz.palette import default_palette
from vcups_ros import conversions as conv

REPO = Path(__file__).resolve().parent.parent
CATEGORY_NAMES = ["background", "road", "object"]
CATEGORY_IS_THING = [False, False, True]
THING_CLASSES = frozenset(i for i, t in enumerate(CATEGORY_IS_THING) if t)
FRAME_PERIOD_NS = 100_000_000  # 10 Hz


def builtin_clip(
    num_frames: int = 12, height: int = 120, width: int = 200
) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """A textured scene with two objects moving across a road: ``(rgb, semantic, track_ids)``."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    frames = []
    for t in range(num_frames):
        semantic = np.zeros((height, width), np.uint8)
        semantic[height // 2 :] = 1
        tracks = np.zeros((height, width), np.int64)
        for track_id, (y, x0, speed) in enumerate([(70, 10, 8), (50, 150, -6)], start=1):
            x = int(np.clip(x0 + speed * t, 0, width - 30))
            semantic[y : y + 20, x : x + 30] = 2
            tracks[y : y + 20, x : x + 30] = track_id
        rgb = (default_palette(3)[semantic] // 2 + texture).astype(np.uint8)
        frames.append((rgb, semantic, tracks))
    return frames


def davis_clip(
    clip_dir: Path, max_frames: int = 12
) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """A DAVIS-2016 clip: the object mask is one thing (track 1); the rest is unlabeled (void)."""
    images = sorted((clip_dir / "images").glob("*.jpg"))[:max_frames]
    if not images:
        raise FileNotFoundError(f"{clip_dir / 'images'}: no *.jpg frames")
    frames = []
    for img_path in images:
        mask_path = clip_dir / "masks" / (img_path.stem + ".png")
        bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None:
            raise FileNotFoundError(f"cannot read {img_path} or {mask_path}")
        fg = mask > 127
        semantic = np.where(fg, 2, IGNORE_LABEL).astype(np.uint8)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.uint8)
        frames.append((rgb, semantic, fg.astype(np.int64)))
    return frames


MAX_COLOURS = 64


def overlay(rgb: npt.NDArray[np.uint8], frame: PanopticFrame) -> npt.NDArray[np.uint8]:
    """Blend segment colours (by track for things, by class for stuff) over the image."""
    palette = default_palette(MAX_COLOURS)
    lut = np.zeros((MAX_SEGMENTS + 1, 3), np.uint8)
    for seg in frame.segments:
        key = seg.track_id + len(CATEGORY_NAMES) if seg.is_thing else seg.category_id
        lut[seg.segment_id] = palette[key % MAX_COLOURS]
    void = frame.segment_ids == VOID_SEGMENT
    out = ((rgb.astype(np.uint16) + lut[frame.segment_ids]) // 2).astype(np.uint8)
    out[void] = rgb[void]
    return out


def run_demo(out_dir: Path, clip_dir: Path | None = None) -> int:
    """Run the demo; returns 0 when everything read back equals what was written."""
    from mcap_ros2.reader import read_ros2_messages
    from rosbags.rosbag2 import StoragePlugin, Writer

    print(
        "vcups demo: the network, pseudo-labels and tracker are not built yet; this runs the "
        "slice that exists: configs -> frames -> ROS messages -> rosbag2 (MCAP) -> read back."
    )
    for kind, (schema, rel) in SCHEMAS.items():
        load_config(REPO / "config" / rel, schema)
        print(f"  config {kind:14s} config/{rel}: valid")

    clip = davis_clip(clip_dir) if clip_dir else builtin_clip()
    source = str(clip_dir) if clip_dir else "built-in moving-objects clip"
    print(f"  clip: {source}, {len(clip)} frames of {clip[0][0].shape[1]}x{clip[0][0].shape[0]}")

    ts = typestore()
    types = conv.MessageTypes.rosbags(ts)
    out_dir.mkdir(parents=True, exist_ok=True)
    bag_dir = out_dir / "demo_bag"
    if bag_dir.exists():
        shutil.rmtree(bag_dir)
    frames = []
    with Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        img_conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        trk_type = msg_type("PanopticTrackArray")
        info_type = msg_type("PanopticInfo")
        trk_conn = writer.add_connection("/panoptic/tracks", trk_type, typestore=ts)
        info_conn = writer.add_connection("/panoptic/info", info_type, typestore=ts)
        info = conv.panoptic_info_msg(
            types,
            version=1,
            category_names=CATEGORY_NAMES,
            category_is_thing=CATEGORY_IS_THING,
            model_name="ground-truth",
        )
        writer.write(info_conn, 0, ts.serialize_cdr(info, info_type))
        for i, (rgb, semantic, track_ids) in enumerate(clip):
            stamp = (i + 1) * FRAME_PERIOD_NS
            header = conv.make_header(stamp, "camera", types)
            img = conv.rgb_to_image_msg(rgb, "bgr8", header, types)
            writer.write(img_conn, stamp, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            frame = PanopticFrame.from_maps(
                semantic, track_ids, THING_CLASSES, stamp_ns=stamp, frame_id="camera", frame_index=i
            )
            frames.append((rgb, frame))
            msg = conv.panoptic_frame_to_msg(frame, types)
            writer.write(trk_conn, stamp, ts.serialize_cdr(msg, trk_type))

    mcap_file = next(bag_dir.glob("*.mcap"))
    counts: Counter[str] = Counter()
    mismatches = 0
    images = iter(frames)
    tracks = iter(frames)
    for m in read_ros2_messages(str(mcap_file)):
        topic = m.channel.topic
        counts[topic] += 1
        if topic == "/camera/image_raw":
            rgb, _ = next(images)
            mismatches += not np.array_equal(conv.image_msg_to_rgb(m.ros_msg), rgb)
        elif topic == "/panoptic/tracks":
            _, frame = next(tracks)
            back, _ = conv.msg_to_panoptic_frame(m.ros_msg)
            same = (
                np.array_equal(back.segment_ids, frame.segment_ids)
                and back.segments == frame.segments
                and back.stamp_ns == frame.stamp_ns
            )
            mismatches += not same
    print(f"  wrote {bag_dir} ({sum(f.stat().st_size for f in bag_dir.iterdir()) // 1024} KiB)")
    for topic, n in sorted(counts.items()):
        print(f"  read back with mcap_ros2: {topic:20s} {n} messages")
    rgb, frame = frames[-1]
    things = sum(s.is_thing for s in frame.segments)
    sem = frame.semantic
    print(
        f"  last frame: {len(frame)} segments ({things} tracked things), "
        f"{int((sem == IGNORE_LABEL).sum())} void pixels"
    )
    overlay_path = out_dir / "overlay_last_frame.png"
    cv2.imwrite(str(overlay_path), overlay(rgb, frame)[:, :, ::-1])
    print(f"  overlay: {overlay_path}")
    if mismatches:
        print(f"vcups demo: FAILED, {mismatches} messages differ from what was written")
        return 1
    print("vcups demo: ok, every message read back equals what was written")
    return 0
