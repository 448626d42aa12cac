"""Patch embeddings of radiographs and what they match: the analyses behind PEAC's anatomy figures.

PEAC (Zhou et al., BMVC 2023; ``visualizations/correspondences.py`` and ``cosegmentation.py`` of the
official code) shows that corresponding anatomy gets similar patch embeddings: **best buddies**
(mutual nearest neighbours of the token descriptors of two images, by cosine similarity) land on the
same landmarks, across views and across patients, and k-means of the descriptors of several patients
co-segments the same structures. Here the descriptors are the deepest tokens of any backbone weights
file (a PEAC-pretrained Swin, or any other 2D backbone), one per ``stride x stride`` cell.

:func:`label_agreement` measures the claim on images whose anatomy is known (the phantom
radiographs): the share of best-buddy pairs whose two cells carry the same anatomical label, against
the share expected by chance (random pairs of cells with the same label frequencies).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from semantic_genesis.errors import DataError

#: Anatomical labels of :func:`phantom_anatomy` (index = label value).
PHANTOM_ANATOMY = ("other", "right lung", "left lung", "heart")


def prepare_images(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """``(N, 1, size, size)`` float32: each ``(H, W)`` image in [0, 1] resized (shorter side) and
    centre-cropped as PEAC's data pipeline does."""
    from semantic_genesis.io.radiograph_folder import resize_and_centre_crop

    return torch.from_numpy(np.stack([resize_and_centre_crop(np.asarray(a, np.float32), size) for a in images]))[:, None]


@torch.no_grad()
def token_embeddings(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised deepest tokens ``(N, h, w, C)`` of ``images (N, C_in, H, W)`` (row-major cells)."""
    backbone.eval()
    channels = int(getattr(backbone, "in_channels", images.shape[1]))
    if images.shape[1] == 1 and channels > 1:
        images = images.expand(-1, channels, -1, -1)
    features = backbone.encode(images).bottleneck  # (N, C, h, w)
    return torch.nn.functional.normalize(features.permute(0, 2, 3, 1).float(), dim=-1)


def mutual_nearest_neighbours(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best buddies of two descriptor sets ``a (N, C)``, ``b (M, C)`` (L2-normalised).

    Returns:
        ``(i, j, similarity)``: int64 indices into ``a`` and ``b`` of the pairs that are each other's
        nearest neighbour by cosine similarity, and that similarity, sorted by decreasing similarity.
    """
    sim = a @ b.T
    nn_ab = sim.argmax(dim=1)  # (N,)
    nn_ba = sim.argmax(dim=0)  # (M,)
    i = torch.nonzero(nn_ba[nn_ab] == torch.arange(len(a))).flatten()
    j = nn_ab[i]
    s = sim[i, j]
    order = s.argsort(descending=True)
    return i[order], j[order], s[order]


def cell_labels(label_map: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The majority label of each cell of ``label_map (H, W)`` on a ``grid = (h, w)`` of equal cells."""
    h, w = grid
    lab = np.asarray(label_map)
    if lab.shape[0] % h or lab.shape[1] % w:
        raise DataError(f"label map {lab.shape} does not divide into a {h} x {w} grid")
    cells = lab.reshape(h, lab.shape[0] // h, w, lab.shape[1] // w).transpose(0, 2, 1, 3).reshape(h, w, -1)
    n = int(lab.max()) + 1
    counts = np.stack([(cells == k).sum(axis=-1) for k in range(n)], axis=-1)
    return counts.argmax(axis=-1)


def label_agreement(emb_a: torch.Tensor, emb_b: torch.Tensor, labels_a: np.ndarray, labels_b: np.ndarray) -> dict[str, Any]:
    """How often the best buddies of two images fall on the same anatomical label.

    Args:
        emb_a, emb_b: ``(h, w, C)`` normalised token embeddings of two images.
        labels_a, labels_b: ``(h, w)`` integer labels of their cells.

    Returns:
        ``{"pairs", "agreement", "chance"}``: the number of best-buddy pairs, the share of them whose
        cells carry the same label, and the share expected for random pairs
        (``sum_l p_a(l) p_b(l)`` over the label frequencies of the two images).
    """
    i, j, _ = mutual_nearest_neighbours(emb_a.reshape(-1, emb_a.shape[-1]), emb_b.reshape(-1, emb_b.shape[-1]))
    la, lb = np.asarray(labels_a).reshape(-1), np.asarray(labels_b).reshape(-1)
    n = int(max(la.max(), lb.max())) + 1
    pa, pb = np.bincount(la, minlength=n) / la.size, np.bincount(lb, minlength=n) / lb.size
    agree = float(np.mean(la[i.numpy()] == lb[j.numpy()])) if len(i) else float("nan")
    return {"pairs": int(len(i)), "agreement": agree, "chance": float(np.sum(pa * pb))}


def phantom_anatomy(radiograph: Any) -> np.ndarray:
    """uint8 ``(H, W)`` labels of a phantom :class:`~semantic_genesis.phantoms.xray.Radiograph`
    (:data:`PHANTOM_ANATOMY`): heart, the lung on the image's left (the patient's right), the other
    lung, everything else."""
    lung = np.asarray(radiograph.masks["lung"], bool)
    heart = np.asarray(radiograph.masks["heart"], bool)
    labels = np.zeros(lung.shape, np.uint8)
    half = lung.shape[1] // 2
    labels[:, :half][lung[:, :half]] = 1
    labels[:, half:][lung[:, half:]] = 2
    labels[heart] = 3
    return labels


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Cluster of each row of ``x (N, C)`` by k-means (scipy's ``kmeans2``, k-means++ start, seeded)."""
    from scipy.cluster.vq import kmeans2

    if not 1 <= k <= len(x):
        raise DataError(f"k-means needs 1 <= clusters <= {len(x)} descriptors, got {k}")
    _, assignment = kmeans2(np.asarray(x, np.float64), k, minit="++", seed=seed)
    return assignment
