"""Process-wide thread settings of the streaming applications (the node, replay, benchmarks).

Library code never calls this: a process decides its own thread pools. The ROS node's
:func:`~vcups_ros.perception_node.run` and ``vcups replay`` do.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits


def limit_blas_threads(threads: int = 1) -> None:
    """Let the BLAS libraries loaded in this process (numpy's and scipy's OpenBLAS) use
    ``threads`` threads from now on.

    The per-frame work calls BLAS only on small matrices (pasting ~50 masks: products of about
    200 x 28 x 200 per detection). For each, OpenBLAS wakes its worker threads, which then spin
    on the other core and compete with the node's own threads. Measured with
    ``bench_node.py --post-process`` (1024x2048, 50 instances, 2 cores, two runs each): node
    overhead 68 and 66 ms with the library's default, 43 and 46 ms with one BLAS thread. A
    BLAS product in the tracker did the same to the plain node (overhead 32-37 instead of
    17-19 ms), which is why the tracker uses ``einsum``. torch's own thread pool is not touched.

    Call it from the main thread before starting workers (OpenBLAS's setting is process-wide).

    Raises:
        ValueError: if ``threads < 1``.
    """
    if threads < 1:
        raise ValueError(f"threads: expected >= 1, got {threads}")
    threadpool_limits(limits=threads, user_api="blas")


def rank_device(device: str) -> str:
    """``device``, except that plain ``cuda`` under torchrun becomes the rank's own GPU,
    ``cuda:$LOCAL_RANK`` (one GPU per rank; ``cuda:<i>`` and ``cpu`` are kept)."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local)}" if device == "cuda" and local else device
