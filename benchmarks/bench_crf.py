"""Error and time of the dense-CRF shortcuts (``vcups_core.pseudo.crf``) at 640x1280, 27 labels.

Reference: the full CRF of method §2.2 (10 iterations, full resolution) with the ``pydensecrf``
backend. Each setting (``scale`` in 1, 0.5, 0.25; ``iterations`` in 10, 5; both backends) is
compared with it: the fraction of pixels whose argmax label differs and the mean absolute
probability difference (over pixels and labels). Times are one run each, single process.

Input: a DAVIS 2016 frame resized to 640x1280 and a stand-in for the semantic logits: 27 k-means
clusters of (Lab colour, row, column) at 1/8 resolution, logits ``-dist² / tau`` upsampled
bilinearly to the image (as CUPS upsamples its logits) and softmaxed.

    python benchmarks/bench_crf.py [--image PATH] [--backends pydensecrf torch]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

from vcups_core.pseudo.crf import dense_crf, have_pydensecrf

DEFAULT_IMAGE = (
    Path(__file__).resolve().parents[2] / "shared/data/davis2016/car-roundabout/images/00024.jpg"
)
"""A real frame from the DAVIS clips beside the checkout (``../shared``); ``--image`` for another."""


def stand_in_probs(image: np.ndarray, n_labels: int = 27, tau: float = 0.05) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    ys, xs = np.mgrid[0 : h // 8, 0 : w // 8].astype(np.float32)
    feats = np.concatenate(
        [lab, (ys / (h // 8))[..., None] * 0.5, (xs / (w // 8))[..., None] * 0.25], axis=2
    ).reshape(-1, 5)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-4)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(feats, n_labels, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    dist = ((feats[:, None, :] - centres[None]) ** 2).sum(-1)  # [n, C]
    logits = torch.from_numpy(-dist / tau).T.reshape(n_labels, h // 8, w // 8)
    logits = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return torch.softmax(logits, dim=0).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--size", default="640x1280")
    parser.add_argument("--labels", type=int, default=27)
    parser.add_argument("--backends", nargs="+", default=["pydensecrf", "torch"])
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    image = cv2.cvtColor(cv2.imread(str(args.image)), cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR))
    probs = stand_in_probs(image, args.labels)
    backends = [b for b in args.backends if b != "pydensecrf" or have_pydensecrf()]
    ref_backend = backends[0]
    print(
        f"image {args.image.name} at {h}x{w}, {args.labels} labels, torch threads {torch.get_num_threads()}"
    )

    t0 = time.perf_counter()
    ref = dense_crf(image, probs, backend=ref_backend)  # type: ignore[arg-type]
    t_ref = time.perf_counter() - t0
    ref_labels = ref.argmax(0)
    unary_diff = (probs.argmax(0) != ref_labels).mean()
    print(
        f"reference: {ref_backend}, scale 1, 10 it: {t_ref:.2f} s; input argmax differs from it on {unary_diff:.2%}"
    )
    print("| backend | scale | iterations | time (s) | argmax differs | mean |Δp| |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        for scale in (1.0, 0.5, 0.25):
            for iterations in (10, 5):
                if backend == ref_backend and scale == 1.0 and iterations == 10:
                    q, dt = ref, t_ref
                else:
                    t0 = time.perf_counter()
                    q = dense_crf(image, probs, iterations=iterations, scale=scale, backend=backend)  # type: ignore[arg-type]
                    dt = time.perf_counter() - t0
                flips = (q.argmax(0) != ref_labels).mean()
                mad = np.abs(q - ref).mean()
                print(
                    f"| {backend} | {scale} | {iterations} | {dt:.2f} | {flips:.3%} | {mad:.2e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
