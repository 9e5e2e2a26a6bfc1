"""The camera's own motion from dense optical flow: fitting, model selection, rigid flow, residuals.

Conventions (those of :mod:`vcups_core.cues.base`):

* Pixel ``(x, y)`` of an ``H x W`` map is centred at ``p = (x + 0.5, y + 0.5)``; its flow
  endpoint in the partner frame is ``p' = p + flow[y, x]``. The intrinsics ``K`` (``float64[3, 3]``,
  ``K[2] = (0, 0, 1)``) map camera rays to these continuous pixel coordinates, so
  ``r = K^-1 (p, 1)`` is the ray of a pixel with ``r_z = 1`` and a pixel of z-depth ``d`` sees
  the point ``X = d r``.
* The camera motion maps this frame's camera coordinates to the partner's:
  ``X' = R X + t`` with ``|t| = 1`` (the scale of a monocular translation is unknown), or, for a
  rotation or a distant scene, ``p' ~ H p`` (homogeneous pixels).
* The pixel grid is exact and all noise sits in the flow endpoint ``p'``. The geometric error of a
  correspondence is therefore measured in the partner image only: ``|H p - p'|`` for a homography
  and the distance of ``p'`` to the epipolar line ``l = F p`` for the essential model.

Everything is vectorised over pixels; the robust fits (OpenCV USAC with a fixed random state)
make every function deterministic: the same inputs give bit-identical outputs in any process.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.cues.base import CameraMotion, FloatMap

F64 = npt.NDArray[np.float64]
CameraModel = Literal["auto", "homography", "essential"]

MIN_CORRESPONDENCES = 16
"""Fewer valid sampled correspondences than this: no camera-motion estimate."""

_USAC_RANDOM_STATE = 20240613
"""Seed of OpenCV's USAC sampler; fixed so that every fit is reproducible across processes."""
_USAC_MAX_ITERATIONS = 2000
_USAC_CONFIDENCE = 0.999
_GRIC_SIGMA_FLOOR_PX = 0.1
"""Lower bound of the flow-noise scale in GRIC (px): no flow is more accurate than this, and it
keeps the criterion finite on exact (oracle) flow."""
_MAD_TO_SIGMA = 1.4826


# ----------------------------------------------------------------------------------------------
# correspondences


def sample_correspondences(
    flow: FloatMap, valid: npt.NDArray[np.bool_] | None, *, max_points: int = 4000
) -> tuple[F64, F64]:
    """A deterministic, spatially uniform subsample of the flow's correspondences.

    The valid pixels (``valid`` True and a finite flow) are taken on a regular grid of stride
    ``s`` starting at ``(s // 2, s // 2)``, with the smallest ``s >= floor(sqrt(n / max_points))``
    (``n`` valid pixels) that keeps at most ``max_points`` of them. There is no random state.

    Args:
        flow: ``float32[H, W, 2]`` flow ``(dx, dy)`` to the partner frame (NaN = undefined).
        valid: ``bool[H, W]`` usable pixels, or None for every pixel with a finite flow.
        max_points: most correspondences returned (>= 1).

    Returns:
        ``(pts0, pts1)``, each ``float64[N, 2]`` (``N <= max_points``, row-major order):
        ``pts0 = (x + 0.5, y + 0.5)`` the sampled pixel centres, ``pts1 = pts0 + flow`` their
        endpoints in the partner frame.

    Raises:
        ValueError: on a flow that is not ``[H, W, 2]``, a mask of another shape, or
            ``max_points < 1``.
    """
    ok = usable_mask(flow, valid)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    n = int(np.count_nonzero(ok))
    if n == 0:
        return np.zeros((0, 2)), np.zeros((0, 2))
    stride = max(1, math.isqrt(n // max_points))
    while True:
        offset = stride // 2
        sub = ok[offset::stride, offset::stride]
        if int(np.count_nonzero(sub)) <= max_points:
            break
        stride += 1
    ys, xs = np.nonzero(sub)
    ys = ys * stride + offset
    xs = xs * stride + offset
    pts0 = np.stack([xs + 0.5, ys + 0.5], axis=-1).astype(np.float64)
    pts1 = pts0 + flow[ys, xs].astype(np.float64)
    return pts0, pts1


# ----------------------------------------------------------------------------------------------
# camera motion


def estimate_camera_motion(
    flow: FloatMap,
    valid: npt.NDArray[np.bool_] | None,
    intrinsics: F64,
    *,
    model: CameraModel = "auto",
    ransac_threshold: float = 1.0,
    max_points: int = 4000,
    noise_floor: float = _GRIC_SIGMA_FLOOR_PX,
) -> CameraMotion | None:
    """Fit the camera's own motion to the flow of the static scene.

    Correspondences come from :func:`sample_correspondences`. The robust fits are OpenCV's USAC
    (uniform sampling, MSAC score, inner local optimisation) with a fixed random state, so the
    result is bit-identical across calls and processes:

    * ``homography``: ``H`` with ``p' ~ H p``, inliers ``|H p - p'| < ransac_threshold``;
    * ``essential``: the 5-point essential matrix ``E = [t]x R`` (inliers by Sampson distance
      ``< ransac_threshold`` px), decomposed by :func:`cv2.decomposeEssentialMat`; of its four
      poses, the one that puts the inliers with measurable parallax in front of both cameras
      (:func:`_disambiguate_pose`, which unlike :func:`cv2.recoverPose` also works for a slow
      camera): ``X' = R X + t``, ``|t| = 1``.

    ``"auto"`` fits both and keeps the one with the lower *GRIC* (Torr's geometric robust
    information criterion, Torr 1998; used for the same choice in e.g. ORB-SLAM's initialiser).
    With residuals ``e_i`` (px, in the partner image: ``|H p - p'|`` resp. the distance of ``p'``
    to its epipolar line) and the noise scale ``sigma``::

        GRIC = sum_i min(e_i^2 / sigma^2, 2 c)  +  ln(4) (4 - c) n  +  ln(4 n) k

    where ``c`` is the codimension of the model's manifold in the 4-D space of correspondences
    (homography 2, essential 1), ``4 - c`` its dimension and ``k`` its parameter count
    (homography 8, essential 5). The first term is the robust fit error, the second the cost of
    coding each point's position on the manifold (one extra dimension, the depth, for the
    essential model), the third the model's own cost. A pure rotation or a distant or planar
    scene is explained by both models, and the homography wins through its lower dimension: the
    essential matrix is degenerate there (any ``t`` fits a rotation), so its ``t`` and any depth
    from it would be noise. Translation through a 3-D scene leaves parallax that the homography
    cannot explain (its ``e_i`` hit the cap), and the essential model wins. Two choices adapt it
    to dense flow:

    * ``n`` counts only the correspondences that at least one model explains (residual below
      ``ransac_threshold``): independently moving objects and flow errors fit neither model and
      would otherwise favour the model with the smaller cap (``2 c``), whatever the camera did;
    * ``sigma`` is the MAD scale of the essential residuals over those points (the more general
      model's residuals measure the flow noise), floored at ``noise_floor`` px: the noise of
      the flow. With estimated flow, a floor below its real noise lets GRIC take the sub-pixel
      parallax of a handheld, mostly rotating camera for 3-D structure and pick the essential
      model, whose 1-D residual misses most independent motion (``motion.flow_noise``).

    Args:
        flow: ``float32[H, W, 2]`` flow to the partner frame (forward or backward alike).
        valid: ``bool[H, W]`` usable pixels, or None for every finite flow pixel.
        intrinsics: ``float64[3, 3]`` K at the flow's resolution.
        model: ``"homography"``, ``"essential"`` or ``"auto"`` (GRIC, above).
        ransac_threshold: inlier threshold in pixels (Sampson distance for the essential fit,
            reprojection distance for the homography).
        max_points: most correspondences used.
        noise_floor: lower bound of GRIC's noise scale (px), the flow's noise (see above).

    Returns:
        The camera motion (``inlier_ratio`` = fraction of the sampled correspondences whose
        residual under the chosen model is below ``ransac_threshold``), or None when fewer than
        :data:`MIN_CORRESPONDENCES` correspondences are valid or the requested fit fails
        (for ``"essential"`` also when fewer than :data:`MIN_CORRESPONDENCES` inliers have a
        parallax above ``ransac_threshold``: a pure rotation or a distant scene).

    Raises:
        ValueError: on bad shapes, an unknown ``model`` or ``ransac_threshold <= 0``.
    """
    if model not in ("auto", "homography", "essential"):
        raise ValueError(f"model must be auto, homography or essential, got {model!r}")
    if not ransac_threshold > 0:
        raise ValueError(f"ransac_threshold must be > 0, got {ransac_threshold}")
    k = _check_intrinsics(intrinsics)
    pts0, pts1 = sample_correspondences(flow, valid, max_points=max_points)
    if len(pts0) < MIN_CORRESPONDENCES:
        return None
    hom = _fit_homography(pts0, pts1, ransac_threshold) if model != "essential" else None
    pose = _fit_essential(pts0, pts1, k, ransac_threshold) if model != "homography" else None
    res_h = _homography_residuals(hom, pts0, pts1) if hom is not None else None
    res_e = _epipolar_residuals(pose[0], pose[1], k, pts0, pts1) if pose is not None else None
    use_h = res_h is not None
    if res_h is not None and res_e is not None:
        use_h = _gric_prefers_homography(res_h, res_e, ransac_threshold, noise_floor)
    if use_h and hom is not None and res_h is not None:
        ratio = float(np.count_nonzero(res_h < ransac_threshold)) / len(pts0)
        return CameraMotion("homography", hom, None, None, ratio)
    if pose is not None and res_e is not None:
        ratio = float(np.count_nonzero(res_e < ransac_threshold)) / len(pts0)
        return CameraMotion("essential", None, pose[0], pose[1], ratio)
    return None


def gric(residuals: F64, sigma: float, codimension: int, num_params: int) -> float:
    """Torr's geometric robust information criterion of one model (lower is better).

    ``GRIC = sum_i min(e_i^2 / sigma^2, 2 c) + ln(4) (4 - c) n + ln(4 n) k`` for ``n``
    correspondences (points of a 4-D data space) with residuals ``e_i``, a model manifold of
    codimension ``c`` and ``k`` parameters (see :func:`estimate_camera_motion`).

    Args:
        residuals: ``float64[n]`` geometric errors in pixels.
        sigma: noise scale in pixels (> 0).
        codimension: 2 for a homography, 1 for an essential or fundamental matrix.
        num_params: 8 for a homography, 5 for an essential matrix, 7 for a fundamental matrix.

    Returns:
        The criterion.
    """
    n = residuals.size
    r = 4.0  # dimension of the data: two image points
    fit = float(np.minimum(residuals**2 / sigma**2, 2.0 * codimension).sum())
    return fit + math.log(r) * (r - codimension) * n + math.log(r * max(n, 1)) * num_params


def _gric_prefers_homography(
    res_h: F64, res_e: F64, threshold: float, noise_floor: float = _GRIC_SIGMA_FLOOR_PX
) -> bool:
    explained = (res_h < threshold) | (res_e < threshold)
    if not explained.any():
        return False
    sigma = max(_MAD_TO_SIGMA * float(np.median(res_e[explained])), noise_floor)
    g_h = gric(res_h[explained], sigma, codimension=2, num_params=8)
    g_e = gric(res_e[explained], sigma, codimension=1, num_params=5)
    return g_h <= g_e


def _usac_params(threshold: float) -> cv2.UsacParams:
    params = cv2.UsacParams()
    params.threshold = float(threshold)
    params.confidence = _USAC_CONFIDENCE
    params.maxIterations = _USAC_MAX_ITERATIONS
    params.randomGeneratorState = _USAC_RANDOM_STATE
    params.isParallel = False
    params.sampler = cv2.SAMPLING_UNIFORM
    params.score = cv2.SCORE_METHOD_MSAC
    params.loMethod = cv2.LOCAL_OPTIM_INNER_LO
    params.final_polisher = cv2.LSQ_POLISHER
    return params


def _fit_homography(pts0: F64, pts1: F64, threshold: float) -> F64 | None:
    try:
        hom, _ = cv2.findHomography(pts0, pts1, _usac_params(threshold))
    except cv2.error:
        return None
    if hom is None or hom.shape != (3, 3) or not np.isfinite(hom).all():
        return None
    out: F64 = np.asarray(hom, dtype=np.float64)
    return out / out[2, 2] if abs(out[2, 2]) > 1e-12 else out


def _fit_essential(pts0: F64, pts1: F64, k: F64, threshold: float) -> tuple[F64, F64] | None:
    try:
        ess, mask = cv2.findEssentialMat(pts0, pts1, k, k, None, None, _usac_params(threshold))
        if ess is None or ess.shape[0] < 3 or mask is None:
            return None
        rot1, rot2, t = cv2.decomposeEssentialMat(ess[:3])
    except cv2.error:
        return None
    inliers = mask.reshape(-1) > 0
    return _disambiguate_pose(
        (np.asarray(rot1, np.float64), np.asarray(rot2, np.float64)),
        np.asarray(t, np.float64).reshape(3),
        pts0[inliers],
        pts1[inliers],
        k,
        threshold,
    )


def _disambiguate_pose(
    rotations: tuple[F64, F64], t: F64, pts0: F64, pts1: F64, k: F64, threshold: float
) -> tuple[F64, F64] | None:
    """Pick the one of ``E``'s four poses ``(R_i, +-t)`` that puts the inliers in front.

    Each inlier triangulates as in :func:`vcups_core.cues.depth.triangulate_depth`: with
    ``a = R r``, ``c = (u, v) t_z - t_xy`` and ``e = a_xy - (u, v) a_z``, its signed parallax
    along the epipolar line is ``(c . e) / |c|`` (normalised units) and its inverse depth
    ``rho = (c . e) / |c|^2``. Only points whose parallax exceeds ``threshold`` pixels vote (the
    sign of a distant point's depth is noise), for the pose under which they lie in front of
    both cameras (``rho > 0``, ``a_z + rho t_z > 0``). :func:`cv2.recoverPose` instead counts
    the points nearer than 50 baselines, which a slow camera (a small baseline) leaves empty,
    and then returns a random sign of ``t``.

    Returns:
        ``(R, t)`` with unit ``t``, or None when fewer than :data:`MIN_CORRESPONDENCES` points
        vote (no measurable translation: a rotation or a distant scene).
    """
    k_inv = np.linalg.inv(k)
    rays = np.c_[pts0, np.ones(len(pts0))] @ k_inv.T
    uv = (np.c_[pts1, np.ones(len(pts1))] @ k_inv.T)[:, :2]
    tau = threshold / (0.5 * (k[0, 0] + k[1, 1]))
    t = t / np.linalg.norm(t)
    best: tuple[F64, F64] | None = None
    best_votes = MIN_CORRESPONDENCES - 1
    for rot in rotations:
        a = rays @ rot.T
        e = a[:, :2] - uv * a[:, 2:]
        for sign in (1.0, -1.0):
            ts = sign * t
            c = uv * ts[2] - ts[:2]
            cn = np.hypot(c[:, 0], c[:, 1])
            with np.errstate(divide="ignore", invalid="ignore"):
                parallax = (c * e).sum(axis=1) / cn
                rho = parallax / cn
            votes = int(np.count_nonzero((parallax > tau) & (a[:, 2] + rho * ts[2] > 0)))
            if votes > best_votes:
                best, best_votes = (rot, ts), votes
    return best


def _homography_residuals(hom: F64, pts0: F64, pts1: F64) -> F64:
    q = np.c_[pts0, np.ones(len(pts0))] @ hom.T
    out: F64 = np.linalg.norm(q[:, :2] / q[:, 2:] - pts1, axis=1)
    return np.where(np.isfinite(out), out, np.inf)


def _epipolar_residuals(rot: F64, t: F64, k: F64, pts0: F64, pts1: F64) -> F64:
    fund = fundamental_matrix(rot, t, k)
    lines = np.c_[pts0, np.ones(len(pts0))] @ fund.T
    num = np.abs((lines[:, :2] * pts1).sum(axis=1) + lines[:, 2])
    den = np.hypot(lines[:, 0], lines[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = num / den
    return np.where(np.isfinite(out), out, np.inf)


def fundamental_matrix(rotation: F64, translation: F64, intrinsics: F64) -> F64:
    """``F = K^-T [t]x R K^-1``: ``(p', 1)^T F (p, 1) = 0`` for static correspondences.

    Args:
        rotation: ``float64[3, 3]`` R of ``X' = R X + t``.
        translation: ``float64[3]`` t of the same.
        intrinsics: ``float64[3, 3]`` K (both frames).

    Returns:
        ``float64[3, 3]`` F; ``F (p, 1)`` is the epipolar line ``(a, b, c)`` of pixel ``p`` in
        the partner image (``a x + b y + c = 0``).
    """
    tx, ty, tz = (float(v) for v in np.asarray(translation, dtype=np.float64).reshape(3))
    skew = np.array([[0.0, -tz, ty], [tz, 0.0, -tx], [-ty, tx, 0.0]])
    k_inv = np.linalg.inv(intrinsics)
    out: F64 = k_inv.T @ skew @ np.asarray(rotation, dtype=np.float64) @ k_inv
    return out


# ----------------------------------------------------------------------------------------------
# dense consequences of a camera motion


def normalized_correspondences(flow: FloatMap, intrinsics: F64) -> tuple[F64, F64, F64, F64]:
    """Every pixel's correspondence in normalised camera coordinates (rays with ``z = 1``).

    Args:
        flow: ``float32[H, W, 2]`` flow to the partner frame.
        intrinsics: ``float64[3, 3]`` K.

    Returns:
        ``(rx, ry, u, v)``, each ``float64[H, W]``: ``(rx, ry, 1) = K^-1 (x + 0.5, y + 0.5, 1)``
        the pixel's ray and ``(u, v, 1) = K^-1 (p + flow, 1)`` the flow endpoint's ray (NaN
        where the flow is NaN).
    """
    _check_flow(flow)
    rx, ry = _planar_rays((flow.shape[0], flow.shape[1]), intrinsics)
    k_inv = np.linalg.inv(_check_intrinsics(intrinsics))
    u, v = _endpoint_rays(rx, ry, flow[..., 0], flow[..., 1], k_inv)
    return rx.copy(), ry.copy(), u, v


def _endpoint_rays(
    rx: F64,
    ry: F64,
    fx: npt.NDArray[np.floating[Any]],
    fy: npt.NDArray[np.floating[Any]],
    k_inv: npt.NDArray[np.floating[Any]],
) -> tuple[F64, F64]:
    """``(u, v)`` of ``K^-1 (p + f, 1)`` from the pixel rays and the flow components (any float
    dtype, same shape): ``u = rx + K^-1[0, 0] fx + K^-1[0, 1] fy``, ``v = ry + K^-1[1, 1] fy``,
    evaluated in float64 in that order (the flow only adds a linear term: ``K^-1[1, 0] = 0``)."""
    u = np.multiply(fx, k_inv[0, 0], dtype=np.float64)
    u += rx  # rx + k00 fx (addition commutes exactly)
    u += np.multiply(fy, k_inv[0, 1], dtype=np.float64)
    v = np.multiply(fy, k_inv[1, 1], dtype=np.float64)
    v += ry
    return u, v


def rigid_flow(
    camera: CameraMotion,
    intrinsics: F64,
    shape: tuple[int, int],
    depth: FloatMap | None = None,
    *,
    translation_scale: float = 1.0,
) -> FloatMap:
    """The flow that the camera's own motion alone explains (the flow of the static scene).

    * Homography: ``p' = pi(H (p, 1))`` for every pixel, ``flow = p' - p`` (``depth`` ignored).
    * Essential: the point ``X = d r`` (``r = K^-1 (p, 1)``, ``d`` the depth) moves to
      ``X' = R X + s t = d (R r + s rho t)`` with ``rho = 1 / d``, and projects to::

          p' = pi(K (R r + s rho t)),     pi(x, y, z) = (x / z, y / z)

      (the factor ``d`` cancels, so ``depth = inf`` gives ``rho = 0``, the rotation-only flow).
      ``s = translation_scale`` converts ``|t| = 1`` to the units of ``depth``
      (:func:`fit_translation_scale`; parallax depth already has ``s = 1``).

    Args:
        camera: the camera motion (``model`` picks the formula).
        intrinsics: ``float64[3, 3]`` K.
        shape: ``(H, W)`` of the flow.
        depth: ``float32[H, W]`` z-depth (> 0, ``inf`` allowed, NaN unknown); required for the
            essential model.
        translation_scale: ``s`` above (essential model only).

    Returns:
        ``float32[H, W, 2]`` flow ``(dx, dy)``; NaN where depth is NaN or not positive, or the
        point would be behind the partner camera.

    Raises:
        ValueError: for the essential model without depth, or a depth of another shape.
    """
    h, w = shape
    k = _check_intrinsics(intrinsics)
    gx, gy = _planar_grid(shape)
    if camera.model == "homography":
        if camera.homography is None:
            raise ValueError("homography camera motion without a homography")
        return _homography_flow(camera.homography, shape)
    else:
        if camera.rotation is None or camera.translation is None:
            raise ValueError("essential camera motion without rotation/translation")
        if depth is None:
            raise ValueError("rigid_flow of the essential model needs a depth map")
        if depth.shape != (h, w):
            raise ValueError(f"depth shape {depth.shape} != flow shape {(h, w)}")
        d = depth.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(d > 0, translation_scale / d, np.nan)  # inf -> 0; <= 0, NaN -> NaN
        rx, ry = _planar_rays(shape, k)
        mx, my, mz = _rotate(camera.rotation, rx, ry)
        t = camera.translation
        mx += rho * t[0]
        my += rho * t[1]
        mz += rho * t[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_z = np.where(mz > 0, 1.0 / mz, np.nan)  # NaN: behind the partner, or NaN depth
        nx, ny = mx * inv_z, my * inv_z
        qx = k[0, 0] * nx + k[0, 1] * ny + k[0, 2]
        qy = k[1, 1] * ny + k[1, 2]
    out: FloatMap = np.stack([qx - gx, qy - gy], axis=-1).astype(np.float32)
    return out


def _homography_flow(m: F64, shape: tuple[int, int]) -> FloatMap:
    """:func:`rigid_flow` of a homography ``m``: ``pi(m (p, 1)) - p`` as ``float32[H, W, 2]``.

    Every pixel's arithmetic is that of the whole-grid expressions
    ``h_i = (m_i0 x + m_i1 y) + m_i2``, ``q = (h_0 / h_2, h_1 / h_2)``, ``float32(q - p)``, with
    the products formed on the image axes and the rest in blocks of rows (cache-sized).
    """
    h, w = shape
    col, row = _grid_axes(shape)
    px = [m[i, 0] * col for i in range(3)]  # [1, W]
    py = [m[i, 1] * row for i in range(3)]  # [H, 1]
    out: FloatMap = np.empty((h, w, 2), np.float32)
    step = max(1, _BLOCK_PIXELS // w)
    with np.errstate(divide="ignore", invalid="ignore"):
        for r0 in range(0, h, step):
            rows = slice(r0, min(h, r0 + step))
            hz = np.add(px[2], py[2][rows])
            hz += m[2, 2]
            for i, centre in ((0, col), (1, row[rows])):
                q = np.add(px[i], py[i][rows])
                q += m[i, 2]
                q /= hz
                np.subtract(q, centre, out=out[rows, :, i])  # float64, rounded to float32
    return out


_BLOCK_PIXELS = 1 << 16
"""Pixels per block of :func:`_homography_flow` (its float64 temporaries stay in the cache)."""


def fit_translation_scale(
    flow: FloatMap,
    valid: npt.NDArray[np.bool_] | None,
    camera: CameraMotion,
    intrinsics: F64,
    depth: FloatMap,
    *,
    max_points: int = 50_000,
) -> float:
    """The scale ``s`` that makes ``rigid_flow(camera, K, shape, depth, translation_scale=s)``
    best match the flow: the translation's length in the units of ``depth``.

    With ``a = R r`` (``r`` the pixel's ray), ``b = t / d`` and the flow endpoint's ray
    ``(u, v, 1) = K^-1 (p', 1)``, a static pixel satisfies ``(u, v) = pi(a + s b)``, i.e. the two
    equations linear in ``s``::

        s (u b_z - b_x) = a_x - u a_z        s (v b_z - b_y) = a_y - v a_z      (c s = e)

    Each pixel's least-squares solution is ``s_i = (c . e) / (c . c)``; the result is the median
    of the ``s_i`` weighted by ``|c_i|`` (its parallax), which minimises ``sum_i |c_i| |s - s_i|``,
    the L1 norm of the linearised residuals: robust to up to half the weight coming from moving
    objects or wrong depth. Pixels without parallax (``|c| = 0``: infinite depth, the epipole)
    carry no weight. The pixels are a regular-grid subsample (:func:`sample_correspondences`).

    Args:
        flow: ``float32[H, W, 2]`` flow along which ``camera`` was estimated.
        valid: ``bool[H, W]`` usable pixels (e.g. static candidates), or None for all.
        camera: an essential-model camera motion.
        intrinsics: ``float64[3, 3]`` K.
        depth: ``float32[H, W]`` z-depth of any (shared) scale, NaN unknown.
        max_points: most pixels used.

    Returns:
        ``s`` (> 0 for a consistent depth), or NaN when no pixel has parallax.

    Raises:
        ValueError: for a homography camera motion or shapes that disagree.
    """
    if camera.model != "essential" or camera.rotation is None or camera.translation is None:
        raise ValueError("fit_translation_scale needs an essential-model camera motion")
    ok = usable_mask(flow, valid)
    if depth.shape != ok.shape:
        raise ValueError(f"depth shape {depth.shape} != flow shape {ok.shape}")
    ok &= np.isfinite(depth) & (depth > 0)
    pts0, pts1 = sample_correspondences(flow, ok, max_points=max_points)
    if len(pts0) == 0:
        return math.nan
    d = depth[(pts0[:, 1] - 0.5).astype(np.intp), (pts0[:, 0] - 0.5).astype(np.intp)]
    k_inv = np.linalg.inv(_check_intrinsics(intrinsics)).astype(np.float64)
    rx, ry = _normalize(pts0, k_inv)
    u, v = _normalize(pts1, k_inv)
    ax, ay, az = _rotate(camera.rotation, rx, ry)
    rho = 1.0 / d.astype(np.float64)
    t = camera.translation
    cx, cy = rho * (u * t[2] - t[0]), rho * (v * t[2] - t[1])
    ex, ey = ax - u * az, ay - v * az
    cc = cx * cx + cy * cy
    use = cc > 0
    if not use.any():
        return math.nan
    s_i = (cx[use] * ex[use] + cy[use] * ey[use]) / cc[use]
    return weighted_median(s_i, np.sqrt(cc[use]))


def weighted_median(values: F64, weights: F64) -> float:
    """The weighted median: the smallest value whose cumulative weight reaches half the total.

    Args:
        values: ``float64[N]``, N >= 1.
        weights: ``float64[N]`` non-negative, positive sum.

    Returns:
        ``argmin_m sum_i w_i |v_i - m|`` (the lower one when two values tie).
    """
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, 0.5 * cum[-1], side="left"))
    return float(values[order][min(idx, len(order) - 1)])


def epipolar_distance(flow: FloatMap, camera: CameraMotion, intrinsics: F64) -> FloatMap:
    """Per pixel, how far the flow endpoint is from where the camera motion allows it (px).

    * Essential: the distance of ``p' = p + flow`` to the epipolar line ``l = F (p, 1)`` in the
      partner image, ``|l . (p', 1)| / sqrt(l_1^2 + l_2^2)`` (:func:`fundamental_matrix`). The
      pixel grid is exact, so this one-sided distance is the geometric error (the Sampson
      distance would spread it over both images). It needs no depth, but it is blind to motion
      along the epipolar line (an object moving parallel to the camera's translation).
    * Homography: ``|flow - homography flow|``, the 2-D residual.

    Args:
        flow: ``float32[H, W, 2]``.
        camera: the camera motion along ``flow``.
        intrinsics: ``float64[3, 3]`` K.

    Returns:
        ``float32[H, W]`` distance in pixels; NaN where the flow is NaN (and, for the essential
        model, at the epipole itself, where the line is undefined).
    """
    _check_flow(flow)
    shape = (flow.shape[0], flow.shape[1])
    if camera.model == "homography":
        expected = rigid_flow(camera, intrinsics, shape)
        diff = flow.astype(np.float64) - expected
        out: FloatMap = np.hypot(diff[..., 0], diff[..., 1]).astype(np.float32)
        return out
    if camera.rotation is None or camera.translation is None:
        raise ValueError("essential camera motion without rotation/translation")
    fund = fundamental_matrix(camera.rotation, camera.translation, _check_intrinsics(intrinsics))
    gx, gy = _grid_axes(shape)  # a row and a column: the products below cost O(H + W)
    # epipolar line l = F (p, 1) of every pixel, in the partner image
    l0 = fund[0, 0] * gx + fund[0, 1] * gy
    l0 += fund[0, 2]
    l1 = fund[1, 0] * gx + fund[1, 1] * gy
    l1 += fund[1, 2]
    l2 = fund[2, 0] * gx + fund[2, 1] * gy
    l2 += fund[2, 2]
    # |l0 (gx + fx) + l1 (gy + fy) + l2|, in place
    num = np.add(gx, flow[..., 0], dtype=np.float64)
    num *= l0
    term = np.add(gy, flow[..., 1], dtype=np.float64)
    term *= l1
    num += term
    num += l2
    np.abs(num, out=num)
    den = np.hypot(l0, l1, out=l0)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(num, den, out=num)
    num[~(den > 0)] = np.nan
    dist: FloatMap = num.astype(np.float32)
    return dist


def epipolar_fundamental(camera: CameraMotion, intrinsics: F64) -> F64:
    """The fundamental matrix of an essential camera motion (as :func:`_epipolar_distance_at`
    uses it)."""
    if camera.rotation is None or camera.translation is None:
        raise ValueError("essential camera motion without rotation/translation")
    return fundamental_matrix(camera.rotation, camera.translation, _check_intrinsics(intrinsics))


def _epipolar_distance_at(
    fx: npt.NDArray[np.float32],
    fy: npt.NDArray[np.float32],
    px: F64,
    py: F64,
    camera: CameraMotion,
    intrinsics: F64,
    *,
    fund: F64 | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`epipolar_distance` of an essential camera motion at some pixels only.

    The same arithmetic per pixel, in the same order, as on the whole grid, so the values are
    bit-identical to those of ``epipolar_distance(flow, camera, intrinsics)`` at these pixels.

    Args:
        fx, fy: ``float32[N]`` the flow components of the pixels.
        px, py: ``float64[N]`` their centres ``(x + 0.5, y + 0.5)`` (:func:`pixel_centres`).
        camera: an essential-model camera motion along the flow.
        intrinsics: ``float64[3, 3]`` K.
        fund: :func:`epipolar_fundamental` of ``camera`` and ``intrinsics`` when already known
            (a caller that computes many chunks), else None.

    Returns:
        ``float32[N]`` distance in pixels (NaN where the flow is NaN or the line undefined).
    """
    if fund is None:
        fund = epipolar_fundamental(camera, intrinsics)
    tmp = np.empty_like(px)
    # l = F (p, 1) = ((F_i0 px + F_i1 py) + F_i2)_i
    l0 = np.multiply(px, fund[0, 0])
    l0 += np.multiply(py, fund[0, 1], out=tmp)
    l0 += fund[0, 2]
    l1 = np.multiply(px, fund[1, 0])
    l1 += np.multiply(py, fund[1, 1], out=tmp)
    l1 += fund[1, 2]
    l2 = np.multiply(px, fund[2, 0])
    l2 += np.multiply(py, fund[2, 1], out=tmp)
    l2 += fund[2, 2]
    num = np.add(px, fx, dtype=np.float64)
    num *= l0
    term = np.add(py, fy, dtype=np.float64, out=tmp)
    term *= l1
    num += term
    num += l2
    np.abs(num, out=num)
    return _over_hypot_f32(num, l0, l1)


_ROUNDING_MARGIN = 1e-12
"""Relative margin of the hypot-free fast paths (:func:`_over_hypot_f32`, the motion score's
``along`` test): far above the few units in the last place (about ``1e-15``) by which
``sqrt(x * x + y * y)`` and ``np.hypot`` differ in float64."""
_SQUARES_RANGE = (1e-250, 1e250)
"""``x * x + y * y`` outside this range may have under- or overflowed: ``np.hypot`` decides."""


def _over_hypot_f32(
    num: npt.NDArray[np.float64], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """``(num / np.hypot(x, y)).astype(np.float32)``, NaN where ``hypot(x, y) > 0`` fails,
    bit-identical but calling the slow ``np.hypot`` only where it can matter.

    ``q = num / sqrt(x * x + y * y)`` is within a relative ``1e-15`` of the float64 value with
    ``hypot``; wherever ``q (1 - m)`` and ``q (1 + m)`` (``m`` = :data:`_ROUNDING_MARGIN`) round
    to the same float32, so does every value between them (rounding is monotonic), the exact
    one included. The other elements (near a float32 rounding boundary, NaN, or squares outside
    :data:`_SQUARES_RANGE`) are recomputed with ``hypot``.
    """
    squares = np.multiply(x, x)
    squares += np.multiply(y, y)
    den = np.sqrt(squares)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.divide(num, den, out=den)
        out = q.astype(np.float32)
        bound = np.multiply(q, 1.0 - _ROUNDING_MARGIN)
        same = bound.astype(np.float32) == np.multiply(q, 1.0 + _ROUNDING_MARGIN, out=bound).astype(
            np.float32
        )
        # the range conditions below hold for every element in practice: checked at once by
        # min/max (NaN-propagating), elementwise only when one may fail
        if not (
            q.size
            and squares.min() > _SQUARES_RANGE[0]
            and squares.max() < _SQUARES_RANGE[1]
            and np.abs(q, out=bound).min() > _SQUARES_RANGE[0]
        ):
            same &= squares > _SQUARES_RANGE[0]
            same &= squares < _SQUARES_RANGE[1]
            same &= (q == 0) | (np.abs(q) > _SQUARES_RANGE[0])  # no float64 subnormal quotient
        redo = np.flatnonzero(~same)
        if redo.size:
            exact_den = np.hypot(x.take(redo), y.take(redo))
            exact = num.take(redo) / exact_den
            exact[~(exact_den > 0)] = np.nan
            out[redo] = exact.astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# helpers


def _planar_grid(shape: tuple[int, int]) -> tuple[F64, F64]:
    """``(x + 0.5, y + 0.5)`` of every pixel: two ``float64[H, W]``."""
    h, w = shape
    gx = np.broadcast_to(np.arange(w, dtype=np.float64) + 0.5, (h, w))
    gy = np.broadcast_to((np.arange(h, dtype=np.float64) + 0.5)[:, None], (h, w))
    return gx, gy


def _grid_axes(shape: tuple[int, int]) -> tuple[F64, F64]:
    """``x + 0.5`` as a ``float64[1, W]`` row and ``y + 0.5`` as a ``float64[H, 1]`` column (they
    broadcast to :func:`_planar_grid`)."""
    h, w = shape
    return (
        (np.arange(w, dtype=np.float64) + 0.5)[None, :],
        (np.arange(h, dtype=np.float64) + 0.5)[:, None],
    )


def pixel_centres(shape: tuple[int, int]) -> tuple[F64, F64]:
    """``(x + 0.5, y + 0.5)`` of every pixel: two read-only, C-contiguous ``float64[H, W]``,
    cached per size (for gathering the centres of some pixels by flat index)."""
    return _centres_of(int(shape[0]), int(shape[1]))


@functools.lru_cache(maxsize=2)  # one clip has one size
def _centres_of(h: int, w: int) -> tuple[F64, F64]:
    gx, gy = (np.ascontiguousarray(g) for g in _planar_grid((h, w)))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def _planar_rays(shape: tuple[int, int], intrinsics: F64) -> tuple[F64, F64]:
    """``(rx, ry)`` of the rays ``K^-1 (x + 0.5, y + 0.5, 1)``: two read-only ``float64[H, W]``
    (C-contiguous), cached per size and ``K``."""
    k = _check_intrinsics(intrinsics)
    return _rays_of(int(shape[0]), int(shape[1]), k.tobytes())


@functools.lru_cache(maxsize=2)  # one clip has one size and one K
def _rays_of(h: int, w: int, k_bytes: bytes) -> tuple[F64, F64]:
    k_inv = np.linalg.inv(np.frombuffer(k_bytes, dtype=np.float64).reshape(3, 3))
    gx, gy = _grid_axes((h, w))
    # K^-1 is upper triangular with last row (0, 0, 1); evaluated as
    # (k00 gx + k01 gy) + k02 and k11 gy + k12 on every pixel
    rx = k_inv[0, 0] * gx + k_inv[0, 1] * gy
    rx += k_inv[0, 2]
    ry = np.ascontiguousarray(np.broadcast_to(k_inv[1, 1] * gy + k_inv[1, 2], rx.shape))
    rx.flags.writeable = False
    ry.flags.writeable = False
    return rx, ry


def _rays_x_row(shape: tuple[int, int], intrinsics: F64) -> F64 | None:
    """The first row ``[1, W]`` of ``_planar_rays(shape, intrinsics)[0]`` when every row equals
    it, else None.

    Without skew (``K^-1[0, 1] = 0``, the ``K^-1`` that :func:`_rays_of` computes), every row
    is ``(K^-1[0, 0] x + (+-0)) + K^-1[0, 2]``, and ``a + (+-0) = a`` for ``a != 0`` (with one
    sign of the zero for every row).
    """
    k = _check_intrinsics(intrinsics)
    if np.linalg.inv(np.frombuffer(k.tobytes(), dtype=np.float64).reshape(3, 3))[0, 1] != 0:
        return None
    return _planar_rays(shape, k)[0][:1]


def _normalize(pts: F64, k_inv: F64) -> tuple[F64, F64]:
    """``(x, y)`` of ``K^-1 (p, 1)`` for pixel points ``float64[N, 2]``."""
    x = k_inv[0, 0] * pts[:, 0] + k_inv[0, 1] * pts[:, 1] + k_inv[0, 2]
    return x, k_inv[1, 1] * pts[:, 1] + k_inv[1, 2]


def _rotate(rot: F64, rx: F64, ry: F64) -> tuple[F64, F64, F64]:
    """``R (rx, ry, 1)`` componentwise (planar arrays are faster than ``[..., 3] @ R.T``)."""
    return (
        rot[0, 0] * rx + rot[0, 1] * ry + rot[0, 2],
        rot[1, 0] * rx + rot[1, 1] * ry + rot[1, 2],
        rot[2, 0] * rx + rot[2, 1] * ry + rot[2, 2],
    )


def _check_flow(flow: FloatMap) -> None:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got {list(flow.shape)}")


def usable_mask(flow: FloatMap, valid: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_]:
    """The usable pixels of a flow map.

    Args:
        flow: ``float32[H, W, 2]`` (NaN = undefined).
        valid: ``bool[H, W]`` or None.

    Returns:
        ``bool[H, W]``: ``valid`` (if given) and a finite flow.

    Raises:
        ValueError: on a flow that is not ``[H, W, 2]`` or a mask of another shape.
    """
    _check_flow(flow)
    # both components finite (a reduction over the axis of length 2 is slow): the two bools of a
    # pixel read as one uint16, 0x0101 when both are True
    ok: npt.NDArray[np.bool_]
    finite = np.isfinite(flow)
    if finite.flags.c_contiguous:
        ok = finite.view(np.uint16).reshape(finite.shape[:2]) == 0x0101
    else:
        ok = np.isfinite(flow[..., 0])
        ok &= np.isfinite(flow[..., 1])
    if valid is not None:
        if valid.shape != ok.shape:
            raise ValueError(f"valid shape {valid.shape} != flow shape {ok.shape}")
        ok &= valid.astype(bool, copy=False)
    return ok


def _check_intrinsics(intrinsics: F64) -> F64:
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all() or not np.allclose(k[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"intrinsics must be a finite 3x3 K with last row (0, 0, 1), got {k}")
    return k
