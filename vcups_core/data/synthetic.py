"""A procedurally rendered driving world with exact ground truth for every cue and label.

A forward-moving pinhole camera (with small yaw/pitch oscillations) drives down a street: a road
with lane markings, sidewalks, terrain strips, building facades with windows, hedges and trees,
poles with traffic signs, and the sky. Cars and persons are textured 3-D boxes; some move on their
own (driving in lanes, one turning, pedestrians walking or crossing), others are parked or
standing. They occlude each other and enter and leave the view.

Every frame is ray-cast analytically (no rasteriser, no randomness at render time), so the ground
truth is exact: RGB, semantic train ids (Cityscapes 19 classes, 255 void), instance track ids
(stable over the clip), metric z-depth, forward and backward optical flow, the mask of
independently moving pixels, intrinsics and camera pose. The clip is a function of its
parameters and ``seed`` alone.

World frame: X right, Y down, Z forward (the camera frame at the start); the ground is the plane
``Y = CAMERA_HEIGHT``. Camera frame: OpenCV (x right, y down, z forward). Poses are camera-to-world
``float64[4, 4]``. Flow is in pixels, ``flow[y, x] = (dx, dy)`` from the pixel centre; it is NaN
where the surface point would be behind the camera in the other frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from vcups_core.checks import check_fits_in_memory, check_frame_rate
from vcups_core.data import cityscapes_classes as cs
from vcups_core.types import IGNORE_LABEL

CAMERA_HEIGHT = 1.5
"""Height of the camera above the ground (m)."""
LANE_WIDTH = 3.5
ROAD_HALF_WIDTH = 2 * LANE_WIDTH
SIDEWALK_OUTER = 10.0
FACADE_X = 12.0
_NEAR = 0.05
_GROUND = -2  # primitive index of the ground plane
_SKY = -1
_SKY_DISTANCE = 1e8
_EMPTY = np.zeros(0, dtype=np.intp)
_LIGHT = np.array([-0.4, -1.0, 0.6]) / np.linalg.norm([-0.4, -1.0, 0.6])  # towards the light


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One thing (car or person) of the world; its id is its track id in every frame.

    The pose follows constant speed and yaw rate along the heading ``(sin yaw, cos yaw)`` in XZ.

    Attributes:
        track_id: instance id (>= 1), stable over the clip.
        category: Cityscapes train id (``PERSON`` or ``CAR``).
        size: full extent ``(width, height, length)`` in metres (local x, y, z).
        x0, z0, yaw0: pose at t = 0 (m, m, rad).
        speed: m/s along the heading (0: static).
        yaw_rate: rad/s (turning).
        colors: ``(primary, secondary)`` RGB in [0, 1].
    """

    track_id: int
    category: int
    size: tuple[float, float, float]
    x0: float
    z0: float
    yaw0: float
    speed: float
    yaw_rate: float
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]

    @property
    def moving(self) -> bool:
        return self.speed != 0.0 or self.yaw_rate != 0.0

    def pose(self, t: float) -> tuple[float, float, float]:
        """``(x, z, yaw)`` of the box centre at time ``t`` (s)."""
        yaw = self.yaw0 + self.yaw_rate * t
        if abs(self.yaw_rate) < 1e-9:
            return (
                self.x0 + self.speed * t * math.sin(self.yaw0),
                self.z0 + self.speed * t * math.cos(self.yaw0),
                yaw,
            )
        r = self.speed / self.yaw_rate
        return (
            self.x0 + r * (math.cos(self.yaw0) - math.cos(yaw)),
            self.z0 + r * (math.sin(yaw) - math.sin(self.yaw0)),
            yaw,
        )


@dataclasses.dataclass(frozen=True)
class _Box:
    """A static (stuff) box: building block, hedge, pole or sign."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    category: int
    color: tuple[float, float, float]
    seed: int


@dataclasses.dataclass(frozen=True)
class SyntheticFrame:
    """Everything known about one rendered frame.

    Attributes:
        rgb: ``uint8[H, W, 3]``.
        semantic: ``uint8[H, W]`` Cityscapes train ids.
        instance: ``int32[H, W]`` track ids of things, 0 elsewhere.
        depth: ``float32[H, W]`` z-depth in metres, ``inf`` for sky.
        flow_forward: ``float32[H, W, 2]`` flow to frame ``index + 1`` (pixels; NaN if undefined).
        flow_backward: ``float32[H, W, 2]`` flow to frame ``index - 1``.
        motion: ``bool[H, W]`` pixels of independently moving objects.
        intrinsics: ``float64[3, 3]`` K.
        pose: ``float64[4, 4]`` camera-to-world.
        stamp_ns: timestamp.
        index: frame number in the clip.
    """

    rgb: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instance: npt.NDArray[np.int32]
    depth: npt.NDArray[np.float32]
    flow_forward: npt.NDArray[np.float32]
    flow_backward: npt.NDArray[np.float32]
    motion: npt.NDArray[np.bool_]
    intrinsics: npt.NDArray[np.float64]
    pose: npt.NDArray[np.float64]
    stamp_ns: int
    index: int


RENDER_BYTES_PER_PIXEL = 256
"""Peak memory of rendering one frame, per pixel (measured: about 200 bytes at 1024x512)."""

SCENE_BYTES_PER_METRE = 100
"""Memory of the scenery along the drive (about one box per 5 m of road, 300 bytes each)."""


def world_bytes(height: int, width: int, num_frames: int, fps: float, ego_speed: float) -> float:
    """About how much memory a :class:`SyntheticWorld` needs to render its frames (bytes)."""
    road = abs(ego_speed) * num_frames / fps + 160.0
    return float(height) * width * RENDER_BYTES_PER_PIXEL + road * SCENE_BYTES_PER_METRE


class SyntheticWorld:
    """A seeded driving clip; :meth:`render` draws any frame of it.

    Args:
        height, width: image size in pixels.
        num_frames: clip length.
        fps: frame rate (stamps are ``start_ns + index / fps``).
        seed: everything random (layout, objects, colours, textures) derives from it.
        num_moving: independently moving things (cars in lanes, one turning; walking persons).
        num_static: parked cars and standing persons.
        ego_speed: camera speed along Z (m/s).
        object_speed: typical speed of moving cars (m/s); persons walk at ~1.4 m/s.
        hfov_deg: horizontal field of view.
        yaw_amplitude_deg, pitch_amplitude_deg: camera rotation oscillation.
        start_ns: stamp of frame 0.

    Raises:
        ValueError: sizes under 8 pixels, no frames, a frame rate that is not a finite number
            > 0, negative object counts, a non-finite speed, or sizes whose rendering needs more
            memory than this machine has (:func:`world_bytes`).
    """

    def __init__(
        self,
        *,
        height: int = 256,
        width: int = 512,
        num_frames: int = 30,
        fps: float = 10.0,
        seed: int = 0,
        num_moving: int = 5,
        num_static: int = 4,
        ego_speed: float = 8.0,
        object_speed: float = 10.0,
        hfov_deg: float = 70.0,
        yaw_amplitude_deg: float = 2.0,
        pitch_amplitude_deg: float = 0.7,
        start_ns: int = 1_700_000_000_000_000_000,
    ) -> None:
        if height < 8 or width < 8:
            raise ValueError(f"height/width: expected >= 8 pixels, got {height}x{width}")
        if num_frames < 1:
            raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
        check_frame_rate(fps, "fps")
        if num_moving < 0 or num_static < 0:
            raise ValueError(f"object counts must be >= 0, got {num_moving}, {num_static}")
        speeds = {"ego_speed": ego_speed, "object_speed": object_speed}
        for name, value in speeds.items():
            if not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite speed (m/s), got {value}")
        check_fits_in_memory(
            world_bytes(height, width, num_frames, fps, ego_speed),
            f"a synthetic clip of {num_frames} frames of {width}x{height}",
        )
        self.height, self.width = height, width
        self.num_frames, self.fps = num_frames, fps
        self.seed = seed
        self.ego_speed = ego_speed
        self.start_ns = start_ns
        self._yaw_amp = math.radians(yaw_amplitude_deg)
        self._pitch_amp = math.radians(pitch_amplitude_deg)
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        self.intrinsics = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
        rng = np.random.default_rng(seed)
        self._phase = rng.uniform(0, 2 * math.pi, size=2)
        duration = num_frames / fps
        self._z_far = ego_speed * duration + 160.0
        self.objects: tuple[SceneObject, ...] = tuple(
            _make_objects(rng, num_moving, num_static, object_speed, self._z_far)
        )
        self._boxes: tuple[_Box, ...] = tuple(_make_stuff(rng, self._z_far))
        # Per-pixel camera rays with z = 1 (so the ray parameter is the z-depth).
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
        self._rays_cam = np.stack(
            [(xs - width / 2) / f, (ys - height / 2) / f, np.ones_like(xs)], axis=-1
        )
        self._pixels = np.stack([xs, ys], axis=-1)

    # ------------------------------------------------------------------------------------------
    # time, camera and object motion

    def __len__(self) -> int:
        return self.num_frames

    def time_of(self, index: float) -> float:
        """Seconds since frame 0."""
        return index / self.fps

    def stamp_ns(self, index: int) -> int:
        return self.start_ns + round(index * 1e9 / self.fps)

    def camera_pose(self, t: float) -> npt.NDArray[np.float64]:
        """Camera-to-world ``float64[4, 4]`` at time ``t`` (s)."""
        yaw = self._yaw_amp * math.sin(2 * math.pi * 0.25 * t + self._phase[0])
        pitch = self._pitch_amp * math.sin(2 * math.pi * 0.6 * t + self._phase[1])
        pose = np.eye(4)
        pose[:3, :3] = _rot_y(yaw) @ _rot_x(pitch)
        pose[:3, 3] = (LANE_WIDTH / 2, 0.03 * math.sin(2 * math.pi * 1.1 * t), self.ego_speed * t)
        return pose

    def object_transform(self, obj: SceneObject, t: float) -> npt.NDArray[np.float64]:
        """Local-to-world ``float64[4, 4]`` of an object's box at time ``t``."""
        x, z, yaw = obj.pose(t)
        m = np.eye(4)
        m[:3, :3] = _rot_y(yaw)
        m[:3, 3] = (x, CAMERA_HEIGHT - obj.size[1] / 2, z)
        return m

    # ------------------------------------------------------------------------------------------
    # rendering

    def frames(self) -> Iterator[SyntheticFrame]:
        """Render every frame in order."""
        for i in range(self.num_frames):
            yield self.render(i)

    def render(self, index: int) -> SyntheticFrame:
        """Render frame ``index`` (any integer; frames outside the clip extrapolate the motion)."""
        t = self.time_of(index)
        pose = self.camera_pose(t)
        rot, origin = pose[:3, :3], pose[:3, 3]
        rays = self._rays_cam @ rot.T  # world directions, [H, W, 3]
        boxes = self._boxes_at(t)
        depth, prim = self._cast(origin, rot, rays, boxes)
        groups = _group_pixels(prim.reshape(-1))
        flat_rays = rays.reshape(-1, 3)
        # World hit points; the sky is put at 1e8 m (its parallax is far below a pixel there).
        points = origin + np.where(np.isinf(depth), _SKY_DISTANCE, depth).reshape(-1, 1) * flat_rays
        rgb, semantic, instance = self._shade(points, flat_rays, depth.reshape(-1), groups, boxes)
        moving = [k for k, b in enumerate(boxes) if b.obj is not None and b.obj.moving]
        motion = np.zeros(prim.size, bool)
        for k in moving:
            motion[groups.get(k, _EMPTY)] = True
        flow_fw = self._flow(points, groups, boxes, moving, t, self.time_of(index + 1))
        flow_bw = self._flow(points, groups, boxes, moving, t, self.time_of(index - 1))
        shape = (self.height, self.width)
        return SyntheticFrame(
            rgb=rgb.reshape(*shape, 3),
            semantic=semantic.reshape(shape),
            instance=instance.reshape(shape),
            depth=depth.astype(np.float32),
            flow_forward=flow_fw,
            flow_backward=flow_bw,
            motion=motion.reshape(shape),
            intrinsics=self.intrinsics.copy(),
            pose=pose,
            stamp_ns=self.stamp_ns(index),
            index=index,
        )

    def _boxes_at(self, t: float) -> list[_Placed]:
        placed = [
            _Placed(
                np.eye(3),
                np.array(b.center),
                np.array(b.half),
                b.category,
                0,
                b.color,
                b.color,
                b.seed,
                None,
            )
            for b in self._boxes
        ]
        for obj in self.objects:
            m = self.object_transform(obj, t)
            half = np.array(obj.size) / 2
            placed.append(
                _Placed(
                    m[:3, :3],
                    m[:3, 3],
                    half,
                    obj.category,
                    obj.track_id,
                    obj.colors[0],
                    obj.colors[1],
                    obj.track_id * 7919 + self.seed,
                    obj,
                )
            )
        return placed

    def _cast(
        self,
        origin: npt.NDArray[np.float64],
        rot: npt.NDArray[np.float64],
        rays: npt.NDArray[np.float64],
        boxes: list[_Placed],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
        """Nearest hit per pixel: z-depth (inf = sky) and primitive index."""
        h, w = self.height, self.width
        depth = np.full((h, w), np.inf)
        prim = np.full((h, w), _SKY, dtype=np.int32)
        down = rays[..., 1] > 1e-9
        t_ground = np.where(
            down, (CAMERA_HEIGHT - origin[1]) / np.where(down, rays[..., 1], 1), np.inf
        )
        hit = np.isfinite(t_ground) & (t_ground > _NEAR)
        depth[hit] = t_ground[hit]
        prim[hit] = _GROUND
        for k, box in enumerate(boxes):
            region = _screen_region(box, origin, rot, self.intrinsics, h, w)
            if region is None:
                continue
            ys, xs = region
            t_box = _ray_box(origin, rays[ys, xs], box)
            closer = t_box < depth[ys, xs]
            depth[ys, xs] = np.where(closer, t_box, depth[ys, xs])
            prim[ys, xs] = np.where(closer, k, prim[ys, xs])
        return depth, prim

    def _shade(
        self,
        points: npt.NDArray[np.float64],
        rays: npt.NDArray[np.float64],
        depth: npt.NDArray[np.float64],
        groups: dict[int, npt.NDArray[np.intp]],
        boxes: list[_Placed],
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
        """Colour, class and instance of every pixel (flattened inputs, one group per primitive)."""
        n = depth.size
        fx = self.intrinsics[0, 0]
        rgb = np.zeros((n, 3), np.float32)
        semantic = np.full(n, IGNORE_LABEL, np.uint8)
        instance = np.zeros(n, np.int32)
        sky = groups.get(_SKY, _EMPTY)
        rgb[sky] = _sky_color(rays[sky], self.seed)
        semantic[sky] = cs.SKY
        ground = groups.get(_GROUND, _EMPTY)
        if ground.size:
            gr = rays[ground]
            # metres per pixel on the ground grow as the view gets grazing
            foot = depth[ground] / fx / np.maximum(gr[:, 1] / np.linalg.norm(gr, axis=1), 0.05)
            cls, col = _ground_color(points[ground, 0], points[ground, 2], foot, self.seed)
            rgb[ground] = col
            semantic[ground] = cls
        for k, box in enumerate(boxes):
            idx = groups.get(k)
            if idx is None:
                continue
            local = (points[idx] - box.center) @ box.rot  # world -> box frame
            col, normal = _box_color(box, local, depth[idx] / fx)
            shade = 0.55 + 0.45 * np.clip((normal @ box.rot.T) @ -_LIGHT, 0, 1)
            rgb[idx] = col * shade[:, None]
            semantic[idx] = box.category
            instance[idx] = box.track_id
        return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), semantic, instance

    def _flow(
        self,
        points: npt.NDArray[np.float64],
        groups: dict[int, npt.NDArray[np.intp]],
        boxes: list[_Placed],
        moving: list[int],
        t: float,
        t_other: float,
    ) -> npt.NDArray[np.float32]:
        """Where each pixel's surface point is seen at ``t_other``, minus the pixel centre."""
        pose = self.camera_pose(t_other)
        rot, origin = pose[:3, :3], pose[:3, 3]
        cam = (points - origin) @ rot
        for k in moving:
            idx = groups.get(k)
            if idx is None:
                continue
            obj = boxes[k].obj
            assert obj is not None
            to_other = self.object_transform(obj, t_other) @ np.linalg.inv(
                self.object_transform(obj, t)
            )
            cam[idx] = (points[idx] @ to_other[:3, :3].T + to_other[:3, 3] - origin) @ rot
        z = cam[:, 2]
        valid = z > _NEAR
        zs = np.where(valid, z, 1.0)
        intr = self.intrinsics
        flow = np.empty((z.size, 2))
        flow[:, 0] = intr[0, 0] * cam[:, 0] / zs + intr[0, 2]
        flow[:, 1] = intr[1, 1] * cam[:, 1] / zs + intr[1, 2]
        flow -= self._pixels.reshape(-1, 2)
        flow[~valid] = np.nan
        return flow.astype(np.float32).reshape(self.height, self.width, 2)


def _group_pixels(prim: npt.NDArray[np.int32]) -> dict[int, npt.NDArray[np.intp]]:
    """Flat pixel indices of each primitive value (one stable sort instead of a mask per box)."""
    order = np.argsort(prim, kind="stable")
    values, starts = np.unique(prim[order], return_index=True)
    bounds = [*starts[1:], order.size]
    return {int(v): order[a:b] for v, a, b in zip(values, starts, bounds, strict=True)}


# ----------------------------------------------------------------------------------------------
# scene layout


@dataclasses.dataclass(frozen=True)
class _Placed:
    """A box at one instant: rotation (local -> world), centre, half extents and appearance."""

    rot: npt.NDArray[np.float64]
    center: npt.NDArray[np.float64]
    half: npt.NDArray[np.float64]
    category: int
    track_id: int
    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    seed: int
    obj: SceneObject | None


def _make_objects(
    rng: np.random.Generator, num_moving: int, num_static: int, speed: float, z_far: float
) -> list[SceneObject]:
    car_size = (1.8, 1.5, 4.2)
    person_size = (0.6, 1.75, 0.45)
    objects: list[SceneObject] = []
    lane_slots: dict[float, list[float]] = {}

    def free_z(x: float, lo: float, hi: float, gap: float) -> float:
        taken = lane_slots.setdefault(x, [])
        for _ in range(50):
            z = float(rng.uniform(lo, hi))
            if all(abs(z - other) > gap for other in taken):
                taken.append(z)
                return z
        taken.append(hi + gap * len(taken))
        return taken[-1]

    lanes = {  # lane centre -> signed speed (each lane one speed, so cars never collide)
        LANE_WIDTH / 2: speed * 1.3,
        1.5 * LANE_WIDTH: speed * 0.6,
        -LANE_WIDTH / 2: -speed,
        -1.5 * LANE_WIDTH: -speed * 0.8,
    }
    lane_xs = list(lanes)
    for i in range(num_moving):
        tid = len(objects) + 1
        colors = (_random_color(rng), _random_color(rng))
        if i % 3 == 2:  # pedestrian: walking along the sidewalk or crossing the road
            if rng.random() < 0.5:
                side = rng.choice([-1.0, 1.0])
                objects.append(
                    SceneObject(
                        tid,
                        cs.PERSON,
                        person_size,
                        side * 8.5,
                        free_z(side * 8.5, 8, 45, 2),
                        0.0 if rng.random() < 0.5 else math.pi,
                        1.4,
                        0.0,
                        colors,
                    )
                )
            else:
                objects.append(
                    SceneObject(
                        tid,
                        cs.PERSON,
                        person_size,
                        -8.0,
                        free_z(99.0, 15, 40, 3),
                        math.pi / 2,
                        1.3,
                        0.0,
                        colors,
                    )
                )
            continue
        x = lane_xs[i % len(lane_xs)]
        v = lanes[x]
        yaw = 0.0 if v > 0 else math.pi
        z = free_z(x, 6 if v > 0 else 30, 60 if v > 0 else 120, 12)
        turning = i == 1 and x > 0  # one car drifts across its lane
        objects.append(
            SceneObject(tid, cs.CAR, car_size, x, z, yaw, abs(v), 0.06 if turning else 0.0, colors)
        )
    for i in range(num_static):
        tid = len(objects) + 1
        colors = (_random_color(rng), _random_color(rng))
        side = 1.0 if i % 2 == 0 else -1.0
        if i % 3 == 2:
            x = side * float(rng.uniform(8, 9.5))
            objects.append(
                SceneObject(
                    tid,
                    cs.PERSON,
                    person_size,
                    x,
                    free_z(x, 10, 50, 2),
                    float(rng.uniform(0, 2 * math.pi)),
                    0.0,
                    0.0,
                    colors,
                )
            )
        else:
            x = side * (ROAD_HALF_WIDTH - 1.1)
            objects.append(
                SceneObject(
                    tid,
                    cs.CAR,
                    car_size,
                    x,
                    free_z(x, 8, 70, 6),
                    float(rng.uniform(-0.05, 0.05)),
                    0.0,
                    0.0,
                    colors,
                )
            )
    return objects


def _make_stuff(rng: np.random.Generator, z_far: float) -> list[_Box]:
    boxes: list[_Box] = []
    for side in (-1.0, 1.0):
        z = -30.0
        while z < z_far:
            length = float(rng.uniform(12, 35))
            if rng.random() < 0.7:
                height = float(rng.uniform(8, 24))
                cat, color = cs.BUILDING, _facade_color(rng)
                depth_x = 15.0
            else:
                height = float(rng.uniform(2.5, 7))
                cat, color = cs.VEGETATION, (0.18, 0.42, 0.12)
                depth_x = 3.0
            cx = side * (FACADE_X + depth_x / 2)
            boxes.append(
                _Box(
                    (cx, CAMERA_HEIGHT - height / 2, z + length / 2),
                    (depth_x / 2, height / 2, length / 2),
                    cat,
                    color,
                    int(rng.integers(1 << 30)),
                )
            )
            z += length + float(rng.uniform(0, 1.5))
        z = float(rng.uniform(0, 10))
        while z < z_far:
            x = side * (ROAD_HALF_WIDTH + 0.6)
            boxes.append(
                _Box(
                    (x, CAMERA_HEIGHT - 2.5, z),
                    (0.08, 2.5, 0.08),
                    cs.POLE,
                    (0.45, 0.45, 0.47),
                    int(rng.integers(1 << 30)),
                )
            )
            if rng.random() < 0.5:
                color = (0.1, 0.25, 0.7) if rng.random() < 0.5 else (0.85, 0.15, 0.1)
                boxes.append(
                    _Box(
                        (x, CAMERA_HEIGHT - 3.0, z - 0.1),
                        (0.35, 0.35, 0.03),
                        cs.TRAFFIC_SIGN,
                        color,
                        int(rng.integers(1 << 30)),
                    )
                )
            z += float(rng.uniform(15, 30))
    return boxes


def _random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    c = rng.uniform(0.1, 0.9, size=3)
    return (float(c[0]), float(c[1]), float(c[2]))


def _facade_color(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(0.45, 0.8)
    tint = rng.uniform(-0.1, 0.1, size=3)
    c = np.clip(base + tint, 0, 1)
    return (float(c[0]), float(c[1]), float(c[2]))


# ----------------------------------------------------------------------------------------------
# geometry


def _rot_y(a: float) -> npt.NDArray[np.float64]:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a: float) -> npt.NDArray[np.float64]:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


_EDGES = [
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (0, 2),
    (1, 3),
    (4, 6),
    (5, 7),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
]
_CORNERS = np.array(
    [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
)


def _screen_region(
    box: _Placed,
    origin: npt.NDArray[np.float64],
    rot: npt.NDArray[np.float64],
    k: npt.NDArray[np.float64],
    h: int,
    w: int,
) -> tuple[slice, slice] | None:
    """Pixel rectangle covering the box's projection (the box clipped to the near plane)."""
    corners = (_CORNERS * box.half) @ box.rot.T + box.center
    cam = (corners - origin) @ rot
    pts = [c for c in cam if c[2] > _NEAR]
    for a, b in _EDGES:
        za, zb = cam[a, 2], cam[b, 2]
        if (za - _NEAR) * (zb - _NEAR) < 0:
            s = (_NEAR - za) / (zb - za)
            pts.append(cam[a] + s * (cam[b] - cam[a]))
    if not pts:
        return None
    p = np.array(pts)
    u = k[0, 0] * p[:, 0] / p[:, 2] + k[0, 2]
    v = k[1, 1] * p[:, 1] / p[:, 2] + k[1, 2]
    x0, x1 = max(math.floor(u.min()), 0), min(math.ceil(u.max()) + 1, w)
    y0, y1 = max(math.floor(v.min()), 0), min(math.ceil(v.max()) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _ray_box(
    origin: npt.NDArray[np.float64], rays: npt.NDArray[np.float64], box: _Placed
) -> npt.NDArray[np.float64]:
    """Ray parameter of the first hit with an oriented box (inf where missed); slab method."""
    o = (origin - box.center) @ box.rot
    d = rays @ box.rot
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    inv = 1.0 / d
    t1 = (-box.half - o) * inv
    t2 = (box.half - o) * inv
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    # explicit 3-way max/min: much faster than reducing over a length-3 last axis
    t_near = np.maximum(np.maximum(lo[..., 0], lo[..., 1]), lo[..., 2])
    t_far = np.minimum(np.minimum(hi[..., 0], hi[..., 1]), hi[..., 2])
    hit = (t_near <= t_far) & (t_near > _NEAR)
    return np.where(hit, t_near, np.inf)


# ----------------------------------------------------------------------------------------------
# textures: value noise in surface coordinates (metres), octaves faded by the pixel footprint


def _hash(
    ix: npt.NDArray[np.int64], iy: npt.NDArray[np.int64], seed: int
) -> npt.NDArray[np.float32]:
    h = (ix.astype(np.uint32) * np.uint32(374761393)) ^ (
        iy.astype(np.uint32) * np.uint32(668265263)
    )
    h = h ^ np.uint32((seed * 2246822519) & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h = h ^ (h >> np.uint32(16))
    out: npt.NDArray[np.float32] = (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(
        1 << 24
    )
    return out


def _value_noise(
    u: npt.NDArray[np.float32], v: npt.NDArray[np.float32], seed: int
) -> npt.NDArray[np.float32]:
    fu, fv = np.floor(u), np.floor(v)
    iu, iv = fu.astype(np.int64), fv.astype(np.int64)
    su, sv = u - fu, v - fv
    su = su * su * (3 - 2 * su)
    sv = sv * sv * (3 - 2 * sv)
    a = _hash(iu, iv, seed)
    b = _hash(iu + 1, iv, seed)
    c = _hash(iu, iv + 1, seed)
    d = _hash(iu + 1, iv + 1, seed)
    out: npt.NDArray[np.float32] = (
        a + (b - a) * su + (c - a) * sv + (a - b - c + d) * su * sv
    ).astype(np.float32)
    return out


def _fbm(
    u: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    footprint: npt.NDArray[np.float64],
    freq: float,
    seed: int,
    octaves: int = 3,
) -> npt.NDArray[np.float32]:
    """Fractal noise in [0, 1]; an octave fades out once its period nears 3 pixels (no aliasing)."""
    total = np.zeros(u.shape, np.float32)
    norm = 0.0
    amp = 1.0
    u32, v32, foot32 = (np.asarray(a, np.float32) for a in (u, v, footprint))
    for o in range(octaves):
        f = np.float32(freq * 2**o)
        weight = np.clip(1.5 - 3.0 * foot32 * f, 0, 1)
        if not weight.any():  # every pixel too far for this and finer octaves
            norm += sum(amp * 0.55**i for i in range(octaves - o))
            total += np.float32(0.5 * sum(amp * 0.55**i for i in range(octaves - o)))
            break
        total += amp * (0.5 + weight * (_value_noise(u32 * f, v32 * f, seed + 101 * o) - 0.5))
        norm += amp
        amp *= 0.55
    return total / np.float32(norm)


def _stripes(
    x: npt.NDArray[np.float64], period: float, width: float, footprint: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Soft 0/1 stripes of ``width`` every ``period`` metres (blurred by the footprint)."""
    dist = np.abs((x + width / 2) % period - width / 2)
    soft = np.maximum(footprint, 1e-3)
    return np.clip(0.5 + (width / 2 - dist) / soft, 0, 1).astype(np.float32)


def _sky_color(rays: npt.NDArray[np.float64], seed: int) -> npt.NDArray[np.float32]:
    d = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    elevation = np.clip(-d[:, 1], 0, 1)
    azimuth = np.arctan2(d[:, 0], d[:, 2])
    clouds = _fbm(azimuth * 12, elevation * 30, np.zeros_like(azimuth), 1.0, seed + 5, octaves=4)
    horizon = np.array([0.72, 0.82, 0.93], np.float32)
    zenith = np.array([0.30, 0.50, 0.85], np.float32)
    mix = (elevation**0.6)[:, None].astype(np.float32)
    base = horizon * (1 - mix) + zenith * mix
    white = np.clip((clouds - 0.45) * 2.5, 0, 0.8)[:, None]
    out: npt.NDArray[np.float32] = base * (1 - white) + white * np.float32(0.95)
    return out


def _ground_color(
    x: npt.NDArray[np.float64], z: npt.NDArray[np.float64], foot: npt.NDArray[np.float64], seed: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    ax = np.abs(x)
    cls = np.where(
        ax < ROAD_HALF_WIDTH, cs.ROAD, np.where(ax < SIDEWALK_OUTER, cs.SIDEWALK, cs.TERRAIN)
    )
    n = _fbm(x, z, foot, 3.0, seed + 11)
    col = np.empty((x.size, 3), np.float32)
    road = cls == cs.ROAD
    g = 0.22 + 0.25 * n[road]
    col[road] = g[:, None] * np.array([1.0, 1.0, 1.05], np.float32)
    # lane markings: solid centre line and road edges, dashed lane separators
    f = foot[road]
    xr, zr = x[road], z[road]
    solid = np.maximum(
        _stripes(xr, 2 * ROAD_HALF_WIDTH, 0.15, f),
        _stripes(xr - ROAD_HALF_WIDTH + 0.3, 1e6, 0.15, f),
    )
    solid = np.maximum(solid, _stripes(xr + ROAD_HALF_WIDTH - 0.3, 1e6, 0.15, f))
    dashed = _stripes(np.abs(xr) - LANE_WIDTH, 1e6, 0.12, f) * _stripes(zr, 9.0, 3.0, f)
    paint = np.maximum(solid, dashed)[:, None]
    col[road] = col[road] * (1 - paint) + 0.9 * paint
    side = cls == cs.SIDEWALK
    fs = foot[side]
    grout = np.maximum(_stripes(x[side], 1.0, 0.04, fs), _stripes(z[side], 1.0, 0.04, fs))
    tone = 0.55 + 0.2 * n[side] - 0.2 * grout
    col[side] = tone[:, None] * np.array([0.95, 0.92, 0.9], np.float32)
    ter = cls == cs.TERRAIN
    col[ter] = np.array([0.35, 0.45, 0.2], np.float32) * (0.6 + 0.7 * n[ter])[:, None]
    return cls.astype(np.uint8), col


def _box_color(
    box: _Placed, local: npt.NDArray[np.float64], footprint: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Colour and local face normal of hit points given in the box frame."""
    rel = np.abs(local) / box.half
    axis = rel.argmax(axis=1)
    normal = np.zeros_like(local)
    normal[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
    shifted = local + box.half  # >= 0, metres from the box corner
    u = np.where(axis == 0, shifted[:, 2], shifted[:, 0])
    v = np.where(axis == 1, shifted[:, 2], shifted[:, 1])
    n = _fbm(u, v, footprint, 2.0, box.seed)
    base = np.array(box.color, np.float32)
    if box.category == cs.BUILDING:
        windows = _stripes(u, 3.0, 1.4, footprint) * _stripes(v, 3.2, 1.5, footprint)
        windows *= (axis != 1).astype(np.float32)
        col = base * (0.75 + 0.5 * n)[:, None]
        glass = np.array([0.15, 0.2, 0.3], np.float32) * (0.6 + n)[:, None]
        return col * (1 - windows[:, None]) + glass * windows[:, None], normal
    if box.category == cs.VEGETATION:
        leaves = _fbm(u, v, footprint, 6.0, box.seed, octaves=3)
        return base * (0.4 + 1.2 * leaves)[:, None], normal
    if box.category == cs.CAR:
        height_frac = shifted[:, 1] / (2 * box.half[1])  # 0 = top (y down)
        glass = ((height_frac < 0.4) & (axis != 1)).astype(np.float32)[:, None]
        body = base * (0.8 + 0.4 * n)[:, None]
        return body * (1 - glass) + np.array([0.1, 0.12, 0.15], np.float32) * glass, normal
    if box.category == cs.PERSON:
        height_frac = shifted[:, 1] / (2 * box.half[1])
        skin = np.array([0.85, 0.65, 0.5], np.float32)
        top = np.array(box.color, np.float32)
        legs = np.array(box.color2, np.float32) * 0.6
        col = np.where(
            (height_frac < 0.13)[:, None], skin, np.where((height_frac < 0.55)[:, None], top, legs)
        )
        return col * (0.8 + 0.4 * n)[:, None], normal
    return base * (0.8 + 0.4 * n)[:, None], normal  # poles, signs
