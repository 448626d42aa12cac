"""Drawn parameters of the restoration transforms, as handed to an implementation.

Each transform draws its per-sample parameters from the caller's CPU generator (``_random``), packs them
in one of these containers and applies them with its torch path or the compiled kernel
(``_plan.run_plan``). All tensors are on the CPU, except the device path's maps
(``nonlinear.device_maps``), which are copied to the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ShuffleDraw:
    """Local shuffle of the batch rows ``rows``: ``seeds[i]`` seeds the windows and permutations of
    ``rows[i]`` (compiled path); windows per sample and the size divisor as in ``local_shuffle``."""

    rows: torch.Tensor
    seeds: torch.Tensor
    num_windows: int
    size_divisor: int


@dataclass(frozen=True)
class BezierMaps:
    """``n`` random intensity maps (float64), see ``nonlinear``.

    Attributes:
        controls: ``(n, 4)`` control values ``a1, b1, a2, b2``.
        inverted: ``(n,)`` bool, True where the inverted branch was drawn.
        table: ``(n, L + 1)`` the exact map at ``j / L``.
        slope: ``(n, L + 1)`` ``table[:, j + 1] - table[:, j]``, 0 in the last column, NaN in cells that
            are evaluated exactly.
        t_grid: ``(n, L + 1)`` the curve parameter t with ``X(t) = j / L`` (non-increasing in j): a value
            in cell j is solved for between ``t_grid[j + 1]`` and ``t_grid[j]``.
    """

    controls: torch.Tensor
    inverted: torch.Tensor
    table: torch.Tensor
    slope: torch.Tensor
    t_grid: torch.Tensor

    @property
    def lut_size(self) -> int:
        return self.table.shape[1] - 1

    def exact_cells(self) -> torch.Tensor:
        """``(n, L)`` bool: cells whose values are evaluated exactly instead of interpolated."""
        return torch.isnan(self.slope[:, :-1])


@dataclass(frozen=True)
class PaintDraw:
    """Drawn parameters of an in- or out-painting of ``n`` samples.

    Attributes:
        corners, sizes: ``(n, W, D)`` int64 boxes; ``counts`` ``(n,)`` of them are active per sample.
        counts: ``(n,)`` int64.
        fill: ``"noise"`` or ``"constant"``.
        seed: seed of the noise stream (noise fill).
        constants: ``(n,)`` fill values (constant fill; zeros otherwise).
    """

    corners: torch.Tensor
    sizes: torch.Tensor
    counts: torch.Tensor
    fill: str
    seed: int
    constants: torch.Tensor
