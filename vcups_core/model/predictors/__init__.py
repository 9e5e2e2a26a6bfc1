"""One inference layer: the :class:`Predictor` contract, :func:`load_predictor` and one module
per backend.

* :mod:`.base`: the :class:`Predictor` protocol, :data:`Backend`, :func:`warm_up` (no torch).
* :mod:`.load`: :func:`load_predictor` (a :class:`~vcups_core.configs.predictor.PredictorConfig`
  -> a predictor; imports the backend it needs, only then).
* :mod:`.torch_predictor`, :mod:`.onnx_predictor`, :mod:`.tensorrt_predictor`: the backends.
  Every backend runs the same network part
  (:meth:`~vcups_core.model.meta_arch.PanopticCascadeMaskTrack.infer_raw`, or its exported
  graph) and the same numpy post-processing
  (:func:`~vcups_core.model.postprocess.frame_prediction_from_raw`), so they return the same
  :class:`~vcups_core.types.FramePrediction` for the same image up to floating-point
  differences.
* :mod:`.exported`: the ``vcups_*`` metadata shared by the exported backends.
* :mod:`.engine_cache`: TensorRT engines built once from an ``.onnx`` and reused (it calls
  :func:`vcups_core.export.tensorrt.build_engine`; that module imports nothing from here).

Importing this package imports no backend (nor torch).
"""

from __future__ import annotations

from vcups_core.model.predictors.base import WARMUP_SIZE, Backend, Predictor, warm_up
from vcups_core.model.predictors.load import load_predictor

__all__ = ["WARMUP_SIZE", "Backend", "Predictor", "load_predictor", "warm_up"]
