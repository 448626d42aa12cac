"""Rubik's cube scrambling (Zhuang et al., MICCAI 2019).

Zhuang, Li, Hu, Ma, Zheng, "Self-supervised feature learning for 3D medical images by playing a
Rubik's cube", MICCAI 2019: a cube is split into 2x2x2 sub-cubes, which are permuted with one of P
permutations (chosen far apart in Hamming distance, as in jigsaw puzzles) and some of which are
rotated by 180 degrees; a network predicts the permutation (P-way) and, per sub-cube, whether it
was rotated (8 binary outputs).

Conventions here:

* Sub-cube (octant) ``j`` of a cube ``(C, X, Y, Z)`` is the block at grid position ``(i, k, l)`` with
  ``j = 4 i + 2 k + l`` (X half ``i``, Y half ``k``, Z half ``l``); X, Y and Z must be even.
* Scrambling with permutation ``p`` (an ordering of 0..7) puts original sub-cube ``p[j]`` at grid
  position ``j``; then the sub-cube now at position ``j`` is rotated by 180 degrees **in the axial
  (X, Y) plane**, i.e. around the Z (slice) axis, where ``rotations[j]`` is set. That rotation keeps
  the sub-cube's shape for any X, Y, Z, so every sub-cube can be rotated; it equals flipping X and Y.
* :func:`unscramble` undoes both exactly (the rotation is its own inverse, then the inverse
  permutation), which is what the tests check.
* :func:`hamming_permutations` picks P permutations of 8 greedily, each new one maximising its
  minimum Hamming distance to those chosen so far (ties broken by the seeded generator).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

from semantic_genesis.errors import ConfigError, DataError

NUM_SUBCUBES = 8


@functools.lru_cache(maxsize=16)
def _hamming_permutations(count: int, seed: int) -> np.ndarray:
    everything = np.array(list(itertools.permutations(range(NUM_SUBCUBES))), dtype=np.int8)  # (40320, 8)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(everything)))]
    nearest = (everything != everything[chosen[0]]).sum(1)
    for _ in range(count - 1):
        nearest[chosen] = -1
        best = np.flatnonzero(nearest == nearest.max())
        pick = int(best[rng.integers(len(best))])
        chosen.append(pick)
        nearest = np.minimum(nearest, (everything != everything[pick]).sum(1))
    return everything[chosen].astype(np.int64)


def hamming_permutations(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` permutations of the 8 sub-cubes, far apart in Hamming distance.

    Args:
        count: P, 1 .. 40320 (the paper uses 100-1000; our tiny configs 10).
        seed: seed of the greedy choice (the first permutation and ties).

    Returns:
        int64 ``(count, 8)``; row ``k`` is permutation ``k`` (the class label of the puzzle).

    Raises:
        ConfigError: ``count`` out of range.
    """
    total = int(np.prod(range(1, NUM_SUBCUBES + 1)))
    if not 1 <= int(count) <= total:
        raise ConfigError(f"rubiks_cube: num_permutations must be in 1..{total}, got {count}")
    return torch.from_numpy(_hamming_permutations(int(count), int(seed)).copy())


def min_hamming_distance(permutations: torch.Tensor) -> int:
    """Smallest Hamming distance between two rows of ``(P, 8)`` permutations (8 for P = 1)."""
    if permutations.shape[0] < 2:
        return NUM_SUBCUBES
    diff = (permutations[:, None, :] != permutations[None, :, :]).sum(-1)
    diff.fill_diagonal_(NUM_SUBCUBES + 1)
    return int(diff.min())


def _check(x: torch.Tensor, who: str) -> tuple[int, int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{who}: expected a 3D batch (B, C, X, Y, Z), got {shape}")
    spatial = tuple(int(s) for s in x.shape[2:])
    if any(s % 2 for s in spatial):
        raise DataError(f"{who}: cube sides must be even to split into 2x2x2 sub-cubes, got {list(spatial)}")
    return spatial  # type: ignore[return-value]


def split_subcubes(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` -> ``(B, 8, C, X/2, Y/2, Z/2)``, sub-cube ``j = 4 i + 2 k + l``."""
    sx, sy, sz = (s // 2 for s in _check(x, "split_subcubes"))
    b, c = x.shape[:2]
    blocks = x.reshape(b, c, 2, sx, 2, sy, 2, sz).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return blocks.reshape(b, NUM_SUBCUBES, c, sx, sy, sz)


def merge_subcubes(blocks: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_subcubes`: ``(B, 8, C, x, y, z)`` -> ``(B, C, 2x, 2y, 2z)``."""
    if blocks.dim() != 6 or blocks.shape[1] != NUM_SUBCUBES:
        raise DataError(f"merge_subcubes: expected (B, 8, C, x, y, z), got {tuple(blocks.shape)}")
    b, _, c, sx, sy, sz = blocks.shape
    grid = blocks.reshape(b, 2, 2, 2, c, sx, sy, sz).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return grid.reshape(b, c, 2 * sx, 2 * sy, 2 * sz)


def _rotate(blocks: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate sub-cubes where ``rotations`` (B, 8) is set by 180 degrees in the (X, Y) plane."""
    turned = torch.flip(blocks, dims=(-3, -2))
    mask = rotations.to(device=blocks.device, dtype=torch.bool).view(*rotations.shape, 1, 1, 1, 1)
    return torch.where(mask, turned, blocks)


def _order(blocks: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``out[b, j] = blocks[b, order[b, j]]``."""
    rows = torch.arange(blocks.shape[0], device=blocks.device)[:, None]
    return blocks[rows, order.to(blocks.device)]


def scramble(x: torch.Tensor, order: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Permute and rotate the sub-cubes of a batch.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch, even sides, any device. Not modified.
        order: int64 ``(B, 8)``: permutation per sample (grid position ``j`` receives sub-cube ``order[b, j]``).
        rotations: bool/0-1 ``(B, 8)``: rotate the sub-cube at grid position ``j`` by 180 degrees.

    Returns:
        The scrambled batch, same shape, dtype and device.
    """
    return merge_subcubes(_rotate(_order(split_subcubes(x), order), rotations))


def unscramble(x: torch.Tensor, order: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`scramble` with the same ``order`` and ``rotations``."""
    blocks = _rotate(split_subcubes(x), rotations)
    return merge_subcubes(_order(blocks, torch.argsort(order.to(torch.int64), dim=1)))


class RubikRecipe:
    """Draw a puzzle per sample: ``recipe(x, generator) -> (scrambled, permutation_label, rotations)``.

    Args:
        num_permutations: P, size of the permutation set (classes of the permutation head).
        rotation_prob: probability that a sub-cube is rotated (independently per sub-cube).
        permutation_seed: seed of :func:`hamming_permutations` (fixed, so P labels mean the same
            permutations in pretraining and wherever the set is rebuilt).

    Returns (of a call): the scrambled batch ``(B, C, X, Y, Z)``, int64 labels ``(B,)`` in ``0..P-1``
    and float ``(B, 8)`` rotation targets in {0, 1} (on the batch's device).
    """

    name = "rubiks_cube"

    def __init__(self, num_permutations: int = 100, rotation_prob: float = 0.5, permutation_seed: int = 0):
        if not 0.0 <= float(rotation_prob) <= 1.0:
            raise ConfigError(f"rubiks_cube: rotation_prob must be in [0, 1], got {rotation_prob}")
        self.permutations = hamming_permutations(num_permutations, permutation_seed)
        self.rotation_prob = float(rotation_prob)

    @property
    def num_permutations(self) -> int:
        return int(self.permutations.shape[0])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check(x, "rubiks_cube")
        b = x.shape[0]
        labels = torch.randint(0, self.num_permutations, (b,), generator=generator)
        rotations = torch.rand(b, NUM_SUBCUBES, generator=generator) < self.rotation_prob
        order = self.permutations[labels]
        scrambled = scramble(x, order, rotations)
        return scrambled, labels.to(x.device), rotations.to(device=x.device, dtype=torch.float32)
