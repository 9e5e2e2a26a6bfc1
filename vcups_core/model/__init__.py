"""The video panoptic network: Panoptic Cascade MaskTrack R-CNN (``docs/method.md`` §3).

Built from torchvision detection parts (ResNet + FPN, RPN, RoIAlign, box coding, matching and
sampling) plus our own cascade, mask, semantic and tracking heads. One concept per module:

* :mod:`~vcups_core.model.backbone`: ResNet-18/34/50 + FPN (P2-P6).
* :mod:`~vcups_core.model.weights`: local backbone weights (torchvision or detectron2 layout).
* :mod:`~vcups_core.model.rpn`: region proposal network.
* :mod:`~vcups_core.model.roi_pool`: multi-level RoIAlign using every CPU core at inference.
* :mod:`~vcups_core.model.cascade`: 3-stage Cascade R-CNN box heads with Video DropLoss.
* :mod:`~vcups_core.model.mask_head`, :mod:`~vcups_core.model.semantic_head`,
  :mod:`~vcups_core.model.track_head`: the other heads.
* :mod:`~vcups_core.model.losses`: DropLoss weights and the association loss (free functions).
* :mod:`~vcups_core.model.panoptic`: the panoptic merge (free function, numpy).
* :mod:`~vcups_core.model.postprocess`: raw network outputs -> :class:`~vcups_core.types.FramePrediction`
  (numpy; shared by the torch and the ONNX/TensorRT predictors).
* :mod:`~vcups_core.model.meta_arch`: the composed network.
* :mod:`~vcups_core.model.build`: ``build_model(cfg)``, the one place that reads the config.
* :mod:`~vcups_core.model.checkpoint`: save/load with metadata.
* :mod:`~vcups_core.model.predictors`: the one ``Predictor`` contract, ``load_predictor`` and
  one module per backend (torch, onnxruntime, TensorRT, with the TensorRT engine cache).
"""
