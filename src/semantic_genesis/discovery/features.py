"""Patient features: the global average of the autoencoder bottleneck (Semantic Genesis self-discovery).

The official ``feature_extractor.py`` takes the output of ``depth_7_relu`` (the 512-channel
bottleneck, 16x16x8 for a 128x128x64 input) through ``GlobalAveragePooling3D``: one 512-d vector per
patient. Here: ``model.encode(x).bottleneck`` averaged over X, Y, Z, giving
``16 * round(32 * width)`` dimensions (512 at width 1).

Batch-norm running statistics are exponential averages over the training steps; after a short
training (small cohorts, tiny configs) they lag behind the final weights and make ``eval()``
features nearly constant. :func:`recalibrate_batchnorm` recomputes them exactly (one pass over the
training scans, cumulative averages, no gradient) before embedding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, store, batch_size: int = 8, device: str | torch.device = "cpu") -> int:
    """Recompute the running statistics of every batch-norm layer as exact averages over ``store``.

    Args:
        model: network whose ``_BatchNorm`` layers track running statistics (others are untouched).
        store: ``ShardedArray``-like of inputs ``(1, X, Y, Z)`` (the training scans).
        batch_size, device: as :func:`embed`.

    Returns:
        The number of recalibrated layers (0: nothing to do, the model is left as it was).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not layers or len(store) == 0:
        return 0
    device = torch.device(device)
    was_training = model.training
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the exact mean over the pass
    model.to(device).train()
    for start in range(0, len(store), batch_size):
        idx = range(start, min(start + batch_size, len(store)))
        model(torch.from_numpy(np.stack([store.item(i) for i in idx])).to(device))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(layers)


@torch.no_grad()
def embed(model: nn.Module, store, batch_size: int = 8, device: str | torch.device = "cpu") -> np.ndarray:
    """One feature vector per item of ``store``.

    Args:
        model: a trained autoencoder with ``encode(x) -> EncoderFeatures``.
        store: ``ShardedArray``-like of scans ``(1, X, Y, Z)`` in [0, 1] (``len`` and ``item(i)``).
        batch_size: scans per forward pass. With ``norm="batch_stats"`` (batch statistics even at
            inference) features depend on the batch composition; the default autoencoder norm,
            ``"batch"``, uses running statistics in ``eval()`` and is batch-independent.
        device: where to run the encoder.

    Returns:
        ``(N, bottleneck_channels)`` float32 array, row ``i`` for item ``i``.
    """
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    out = []
    for start in range(0, len(store), batch_size):
        idx = range(start, min(start + batch_size, len(store)))
        x = torch.from_numpy(np.stack([store.item(i) for i in idx])).to(device)
        bottleneck = model.encode(x).bottleneck
        out.append(bottleneck.flatten(2).mean(dim=2).float().cpu().numpy())
    model.train(was_training)
    channels = getattr(model, "bottleneck_channels", 0)
    return np.concatenate(out) if out else np.zeros((0, channels), np.float32)
