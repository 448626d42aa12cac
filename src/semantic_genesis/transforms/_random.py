"""Shared helpers of the transforms: the batch contract, batch checks and per-sample parameter sampling.

The batch contract (:func:`as_batch`, given to every public transform by :func:`sample_or_batch`):
without ``spatial_dims`` only 5D batches ``(B, C, X, Y, Z)`` are accepted; with ``spatial_dims`` 2 or 3,
batches ``(B, C, *spatial)`` and single samples ``(C, *spatial)`` (run as ``x[None]``). A 4D tensor is
never guessed to be a 2D batch or a 3D sample.

Every random transform follows the same rule (see ``docs/internals.md``): all randomness comes from an
explicit CPU :class:`torch.Generator`. On the CPU paths (kernels, torch) the *parameters* (window sizes
and corners, curve control points, which samples are transformed...) are drawn from it directly; bulk
per-voxel noise (the uniform fill of the painting transforms, the elastic displacement noise) is drawn
from a generator on the data's device seeded by one draw of it. The device path (the default for a
batch on a GPU, see ``_backend``) draws the parameters from that device generator too, so that a call
neither ships random numbers from the CPU nor waits for the device. The helpers below draw on their
generator's device. The same seed gives identical outputs on the same device and path.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Sequence, TypeVar

import torch

from semantic_genesis.errors import DataError

F = TypeVar("F", bound=Callable[..., Any])


def as_batch(x: torch.Tensor, name: str, spatial_dims: int | None = None) -> tuple[torch.Tensor, bool]:
    """Apply the batch contract of the transforms and presets: return ``(batch, was_single_sample)``.

    * ``spatial_dims=None``: only a 5D batch ``(B, C, X, Y, Z)`` is accepted, the one shape that cannot
      be read two ways. A 4D tensor is either a 2D batch ``(B, C, H, W)`` or one 3D sample
      ``(C, X, Y, Z)``, so it is refused with a message saying what to pass, never guessed.
    * ``spatial_dims=2`` or ``3``: ``(B, C, *spatial)`` is a batch; ``(C, *spatial)`` is one sample,
      transformed exactly as ``x[None]`` and returned without the batch axis.

    Args:
        x: the tensor given to the transform.
        name: the calling transform, for error messages.
        spatial_dims: 2, 3 or None (see above).

    Raises:
        DataError: not a float tensor, an ambiguous or unsupported number of dimensions.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor batch, got {type(x).__name__}")
    shape = tuple(x.shape)
    if spatial_dims is None:
        if x.dim() == 4:
            raise DataError(
                f"{name}: a 4D tensor {shape} is ambiguous; pass spatial_dims=2 for a batch (B, C, H, W) "
                f"or spatial_dims=3 for one sample (C, X, Y, Z)"
            )
        if x.dim() != 5:
            raise DataError(
                f"{name}: expected a batch (B, C, X, Y, Z), got shape {shape}; pass spatial_dims=2 or 3 "
                f"for a batch (B, C, *spatial) or one sample (C, *spatial)"
            )
        single = False
    elif spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise DataError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims!r}")
    elif x.dim() == spatial_dims + 2:
        single = False
    elif x.dim() == spatial_dims + 1:
        single = True
    else:
        raise DataError(
            f"{name}: with spatial_dims={spatial_dims} expected a batch (B, C, *spatial) of {spatial_dims + 2} "
            f"dimensions or one sample (C, *spatial) of {spatial_dims + 1}, got shape {shape}"
        )
    if not x.is_floating_point():
        raise DataError(f"{name}: expected a floating point batch with values in [0, 1], got {x.dtype}")
    return (x[None] if single else x), single


def unbatch(result: Any, single: bool) -> Any:
    """Drop the batch axis that :func:`as_batch` added, from a tensor or each tensor of a tuple."""
    if not single:
        return result
    if isinstance(result, tuple):
        return tuple(unbatch(item, single) for item in result)
    return result[0] if isinstance(result, torch.Tensor) else result


def sample_or_batch(name: str, paired: Sequence[str] = ()) -> Callable[[F], F]:
    """Give a batch transform ``fn(x, ...)`` the keyword-only ``spatial_dims`` argument of :func:`as_batch`.

    The wrapped function always receives a batch; a single sample ``(C, *spatial)`` (allowed when
    ``spatial_dims`` is given) runs as ``x[None]`` and every tensor it returns loses the batch axis.

    Args:
        name: the transform's name, for error messages.
        paired: names of further tensor arguments that travel with ``x`` (e.g. ``flip``'s ``target``).
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        first = next(iter(signature.parameters))

        @functools.wraps(fn)
        def run(*args: Any, spatial_dims: int | None = None, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            batch, single = as_batch(bound.arguments[first], name, spatial_dims)
            bound.arguments[first] = batch
            for other in paired:
                value = bound.arguments.get(other)
                if single and isinstance(value, torch.Tensor):
                    bound.arguments[other] = value[None]
            return unbatch(fn(*bound.args, **bound.kwargs), single)

        extra = inspect.Parameter("spatial_dims", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="int | None")
        params = list(signature.parameters.values())
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        run.__signature__ = signature.replace(parameters=params[:at] + [extra] + params[at:])  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


def check_batch(x: torch.Tensor, name: str = "transform") -> tuple[int, ...]:
    """Validate a batch and return its spatial shape (inside a transform, after :func:`as_batch`).

    Args:
        x: float tensor ``(B, C, X, Y, Z)`` or ``(B, C, H, W)``, values in [0, 1].
        name: the calling transform, for error messages.

    Returns:
        The spatial shape ``x.shape[2:]``.

    Raises:
        DataError: not a tensor, not floating point, or not 4D/5D.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor batch, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise DataError(
            f"{name}: expected a batch (B, C, X, Y, Z) or (B, C, H, W), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DataError(f"{name}: expected a floating point batch with values in [0, 1], got {x.dtype}")
    return tuple(int(s) for s in x.shape[2:])


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """Return ``generator``, or a fresh CPU generator seeded from torch's global RNG.

    A CUDA generator is rejected: parameters are always drawn on the CPU.
    """
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator().manual_seed(seed)
    if not isinstance(generator, torch.Generator):
        raise DataError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise DataError(
            f"generator: expected a CPU torch.Generator (parameters are drawn on the CPU and moved to "
            f"the data's device), got one on {generator.device}"
        )
    return generator


def draw_seed(generator: torch.Generator) -> int:
    """One draw of the CPU ``generator`` in ``[0, 2**62)``, seeding a stream of bulk random numbers."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded by one draw of the CPU ``generator`` (for bulk noise)."""
    return torch.Generator(device=device).manual_seed(draw_seed(generator))


def uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Float64 uniform draws in [0, 1) on the generator's device (the CPU for the transforms' parameters)."""
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)


def bernoulli(generator: torch.Generator, n: int, p: float) -> torch.Tensor:
    """``n`` booleans on the generator's device, each True with probability ``p`` (as ``random() < p`` in the reference)."""
    return uniform(generator, n) < p


def randint_between(generator: torch.Generator, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Integers uniform on the inclusive range ``[low, high]`` elementwise (int64, on the generator's device).

    ``low`` and ``high`` are integer tensors of the same shape on the generator's device; where ``high < low`` the result is
    ``low`` (a degenerate range, e.g. a window that fills the whole axis).
    """
    low = low.to(torch.int64)
    high = torch.maximum(high.to(torch.int64), low)
    u = uniform(generator, *low.shape)
    value = low + torch.floor(u * (high - low + 1).to(torch.float64)).to(torch.int64)
    return torch.minimum(value, high)


def geometric_counts(generator: torch.Generator, n: int, max_count: int, p: float) -> torch.Tensor:
    """Counts of ``while count < max_count and random() < p: count += 1`` for ``n`` samples.

    This is the reference's window-count loop: ``P(k) = p**k (1 - p)`` for ``k < max_count`` and
    ``P(max_count) = p**max_count``.
    """
    if max_count <= 0:
        return torch.zeros(n, dtype=torch.int64, device=generator.device)
    hits = uniform(generator, n, max_count) < p
    return torch.cumprod(hits.to(torch.int64), dim=1).sum(dim=1)


def strides(shape: Sequence[int]) -> list[int]:
    """Row-major strides (in elements) of a spatial shape."""
    result = [1] * len(shape)
    for axis in range(len(shape) - 2, -1, -1):
        result[axis] = result[axis + 1] * shape[axis + 1]
    return result


def box_mask(
    corners: torch.Tensor, sizes: torch.Tensor, shape: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Boolean masks of axis-aligned boxes.

    Args:
        corners: ``(N, D)`` int64 first voxel of each box (D = 2 or 3 spatial axes).
        sizes: ``(N, D)`` int64 box sizes.
        shape: the spatial shape (D values).
        device: where the mask is built.

    Returns:
        ``(N, *shape)`` bool, True inside each box.
    """
    corners = corners.to(device)
    sizes = sizes.to(device)
    ndim = len(shape)
    mask = torch.ones((corners.shape[0],) + (1,) * ndim, dtype=torch.bool, device=device)
    for axis, dim in enumerate(shape):
        coords = torch.arange(dim, device=device)
        inside = (coords >= corners[:, axis, None]) & (coords < corners[:, axis, None] + sizes[:, axis, None])
        view = [inside.shape[0]] + [1] * ndim
        view[axis + 1] = dim
        inside = inside.view(view)
        mask = mask & inside
    return mask.expand(corners.shape[0], *shape)


@functools.lru_cache(maxsize=512)
def _cached_constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def device_constant(values: Sequence, device: torch.device, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A small constant tensor on ``device``, made once per process and device and then reused.

    On CUDA every ``torch.tensor(..., device=...)`` or ``.to(device)`` of CPU data is a copy that waits
    for the device; constants used at every call are therefore copied once. Never modify the result.
    """
    return _cached_constant(tuple(values), torch.device(device), dtype)


def numel(shape: Sequence[int]) -> int:
    """Number of voxels of a spatial shape."""
    return int(math.prod(shape))
