"""The one training engine shared by every pretraining method.

* :mod:`~semantic_genesis.training.data`: store datasets, the deterministic resumable sampler.
* :mod:`~semantic_genesis.training.distributed`: DDP set-up from ``torchrun`` environment variables.
* :mod:`~semantic_genesis.training.optim`: optimiser and learning-rate schedule from the config.
* :mod:`~semantic_genesis.training.checkpoint`: atomic checkpoints, resume, weights files.
* :mod:`~semantic_genesis.training.logging`: ``metrics.jsonl``, TensorBoard, progress bar.
* :mod:`~semantic_genesis.training.trainer`: :func:`train` itself.

Import the submodules you need (they import torch).
"""
