"""Grid-aligned view pairs and their token overlap: PEAC's "stable grid-based matching".

PEAC (Zhou et al., "Learning Anatomically Consistent Embedding for Chest Radiography", BMVC 2023)
cuts two overlapping crops of one radiograph on a grid whose cell equals the backbone's total stride
``g``. Every output token of a crop then covers exactly one grid cell, and a cell shared by both crops
is the same pixels in both, so the token correspondence is known by construction (not learnt). The
official data pipeline (``utils/build_loader_global_local.py``):

1. resize the shorter side to ``(k + m + 1) * g`` pixels and centre-crop a square of that size
   (paper: 608 = 19 x 32; done by the data set,
   :func:`semantic_genesis.io.radiograph_folder.resize_and_centre_crop`);
2. a pixel jitter ``(jr, jc)``, each uniform in ``0 .. g - 1`` and **shared by both views**, cuts a
   ``(k + m) * g`` base image (576 px), so both views stay aligned to the same grid;
3. four independent cell offsets ``r1, c1, r2, c2`` uniform in ``0 .. m`` give the views
   ``base[r * g : (r + k) * g, c * g : (c + k) * g]`` (paper: 14 x 14 cells = 448 px, ``m = 4``).

:func:`overlap_masks` turns the offsets into two boolean masks over the ``k * k`` tokens (row-major,
token ``j = row * k + col``) that select the shared cells in the same order in both views, so
``tokens1[mask1]`` and ``tokens2[mask2]`` are paired position by position; ``(k - |dr|) (k - |dc|)``
tokens are selected (``dr = r1 - r2``, ``dc = c1 - c2``).

The official ``get_index`` writes the mask as ``mask[col range, row range]`` (rows from the column
offsets), which pairs the right tokens only when ``dr == dc``. :func:`overlap_masks` follows the
intended rule (row offsets index rows); ``legacy_transposed=True`` reproduces the official masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from semantic_genesis.errors import ConfigError, DataError


@dataclass
class GridViews:
    """Two grid-aligned views of a batch of images.

    Attributes:
        view1: ``(B, C, k * g, k * g)`` first crops (same dtype and device as the images).
        view2: ``(B, C, k * g, k * g)`` second crops.
        offsets1: int64 ``(B, 2)`` cell offsets ``(row, col)`` of view 1 in ``0 .. m`` (CPU).
        offsets2: int64 ``(B, 2)`` cell offsets of view 2 (CPU).
        jitter: int64 ``(B, 2)`` pixel jitter ``(row, col)`` in ``0 .. g - 1`` shared by both views (CPU).
    """

    view1: torch.Tensor
    view2: torch.Tensor
    offsets1: torch.Tensor
    offsets2: torch.Tensor
    jitter: torch.Tensor


class GridViewSampler:
    """Draws PEAC's two grid-aligned crops of square images of ``(k + m + 1) * g`` pixels.

    Args:
        cell: grid cell ``g`` in pixels; must equal the backbone's total stride (paper: 32).
        crop_cells: crop size ``k`` in cells (paper: 14 -> 448 px crops).
        max_offset: largest cell offset ``m`` of a crop (paper: 4; offsets are ``0 .. m``).
        jitter: draw the shared sub-cell pixel jitter (``False``: always 0).

    Example (paper setting): ``GridViewSampler(32, 14, 4)`` takes 608 x 608 images, gives 448 x 448
    views; the tiny setting ``GridViewSampler(8, 8, 4)`` takes 104 x 104 images, gives 64 x 64 views.
    """

    def __init__(self, cell: int, crop_cells: int, max_offset: int, jitter: bool = True):
        for name, value, low in (("cell", cell, 1), ("crop_cells", crop_cells, 1), ("max_offset", max_offset, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"grid views: {name} must be an integer >= {low}, got {value!r}")
        if max_offset >= crop_cells:
            raise ConfigError(f"grid views: max_offset ({max_offset}) must be smaller than crop_cells ({crop_cells}) "
                              "so that the two views always overlap")
        self.cell = cell
        self.crop_cells = crop_cells
        self.max_offset = max_offset
        self.jitter = bool(jitter)

    @property
    def image_size(self) -> int:
        """Side of the images the sampler takes: ``(k + m + 1) * g`` (paper 608, tiny 104)."""
        return (self.crop_cells + self.max_offset + 1) * self.cell

    @property
    def view_size(self) -> int:
        """Side of each view: ``k * g`` (paper 448, tiny 64)."""
        return self.crop_cells * self.cell

    @property
    def num_tokens(self) -> int:
        """Tokens per view at stride ``g``: ``k * k``."""
        return self.crop_cells * self.crop_cells

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(offsets1, offsets2, jitter)``, int64 ``(B, 2)`` each, drawn from ``generator`` (CPU)."""
        if self.jitter:
            jitter = torch.randint(0, self.cell, (batch_size, 2), generator=generator)
        else:
            jitter = torch.zeros(batch_size, 2, dtype=torch.int64)
        offsets = torch.randint(0, self.max_offset + 1, (batch_size, 4), generator=generator)
        return offsets[:, :2].contiguous(), offsets[:, 2:].contiguous(), jitter

    def crop(self, images: torch.Tensor, offsets: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
        """The views of ``images (B, C, S, S)`` at cell ``offsets (B, 2)`` after pixel ``jitter (B, 2)``."""
        size = self.view_size
        rows = (jitter[:, 0] + offsets[:, 0] * self.cell).tolist()
        cols = (jitter[:, 1] + offsets[:, 1] * self.cell).tolist()
        return torch.stack([images[i, :, r:r + size, c:c + size] for i, (r, c) in enumerate(zip(rows, cols))])

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> GridViews:
        """Two views of every image.

        Args:
            images: ``(B, C, S, S)`` with ``S = image_size``, any dtype and device.
            generator: CPU generator for the jitter and the offsets.

        Raises:
            DataError: images of another shape (the message names the expected size).
        """
        if images.ndim != 4 or images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise DataError(f"grid views: expected images (B, C, {self.image_size}, {self.image_size}) "
                            f"= (k + m + 1) * g pixels, got {tuple(images.shape)}")
        offsets1, offsets2, jitter = self.draw(images.shape[0], generator)
        return GridViews(self.crop(images, offsets1, jitter), self.crop(images, offsets2, jitter),
                         offsets1, offsets2, jitter)


def overlap_masks(offsets1: Sequence[int] | torch.Tensor, offsets2: Sequence[int] | torch.Tensor, crop_cells: int,
                  legacy_transposed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of the tokens of two views that cover the same grid cells.

    Along each axis the views share the image cells ``[max(o1, o2), min(o1, o2) + k)``; token ``(r, c)``
    of view ``v`` covers cell ``(r + row offset, c + col offset)``. Both masks select the shared cells in
    the same row-major order, so ``tokens1[mask1]`` pairs with ``tokens2[mask2]`` position by position.

    Args:
        offsets1: cell offsets ``(row, col)`` of view 1: a pair, or int ``(B, 2)``.
        offsets2: the same for view 2.
        crop_cells: ``k``, the view size in cells.
        legacy_transposed: reproduce the official ``get_index``, which takes the mask's rows from the
            column offsets and its columns from the row offsets (correct only when ``dr == dc``).

    Returns:
        ``(mask1, mask2)``: bool ``(k * k,)`` for a pair of offsets, ``(B, k * k)`` for batches.
    """
    o1 = torch.as_tensor(offsets1, dtype=torch.int64)
    o2 = torch.as_tensor(offsets2, dtype=torch.int64)
    single = o1.ndim == 1
    o1, o2 = o1.reshape(-1, 2), o2.reshape(-1, 2)
    if legacy_transposed:
        o1, o2 = o1.flip(1), o2.flip(1)
    k = int(crop_cells)
    idx = torch.arange(k)
    lo = torch.maximum(o1, o2)  # (B, 2) first shared cell per axis
    hi = torch.minimum(o1, o2) + k  # (B, 2) one past the last shared cell

    def mask(o: torch.Tensor) -> torch.Tensor:
        cells = o[:, :, None] + idx  # (B, 2, k) image cell of each token row / column
        inside = (cells >= lo[:, :, None]) & (cells < hi[:, :, None])
        return (inside[:, 0, :, None] & inside[:, 1, None, :]).reshape(-1, k * k)

    m1, m2 = mask(o1), mask(o2)
    return (m1[0], m2[0]) if single else (m1, m2)


def cell_id_image(cells: int, cell: int, channels: int = 1) -> torch.Tensor:
    """A float64 ``(channels, cells * cell, cells * cell)`` image whose ``cell x cell`` blocks hold their
    row-major cell number (``row * cells + col``): after a grid-aligned crop, the block values say
    which image cell each token covers (used to test :class:`GridViewSampler` and :func:`overlap_masks`)."""
    ids = torch.arange(cells * cells, dtype=torch.float64).reshape(cells, cells)
    image = ids.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    return image.expand(channels, -1, -1).clone()
