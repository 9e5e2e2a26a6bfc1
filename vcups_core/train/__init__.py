"""Training of the video panoptic model on pseudo-labels (method §4).

* :mod:`~vcups_core.train.sample`: a training clip and its targets (the data contract).
* :mod:`~vcups_core.train.data`: frame cache, store index, data order, dataset.
* :mod:`~vcups_core.train.augment`: clip-consistent augmentation and resolution jitter.
* :mod:`~vcups_core.train.copy_paste`: self-enhanced video copy-paste.
* :mod:`~vcups_core.train.self_enhance`: the model's confident tracks as paste sources.
* :mod:`~vcups_core.train.distributed`: torchrun / ``torch.distributed`` set-up.
* :mod:`~vcups_core.train.loop`: the loop (resume, checkpoints, logs).
"""
