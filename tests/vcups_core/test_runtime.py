"""limit_blas_threads sets numpy's BLAS thread pool (restored afterwards)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from vcups_core.runtime import limit_blas_threads


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_limit_blas_threads_sets_every_loaded_blas() -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    before = _blas_threads()
    assert before, "numpy links a BLAS library"
    try:
        limit_blas_threads(1)
        assert _blas_threads() == [1] * len(before)
    finally:
        threadpool_limits(limits=max(before), user_api="blas")
    with pytest.raises(ValueError, match="threads: expected >= 1, got 0"):
        limit_blas_threads(0)


def test_rank_device_gives_each_torchrun_rank_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from vcups_core.runtime import rank_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert rank_device("cuda") == "cuda" and rank_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == "cuda:3"
    assert rank_device("cuda:1") == "cuda:1" and rank_device("cpu") == "cpu"
