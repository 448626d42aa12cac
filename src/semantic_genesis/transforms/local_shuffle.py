"""Local pixel shuffling (Models Genesis, Zhou et al. 2019/2021, Sec. 3.1 "local-shuffling").

Reference process (``local_pixel_shuffling``), per cube: ``num_windows`` times, draw a window of size
``U{1 .. dim // 10}`` per axis at a corner ``U{0 .. dim - size}``, take the window's voxels from the
**original** cube, permute them uniformly at random and write them into the output; later windows
overwrite earlier ones where they overlap. Models Genesis uses 10,000 windows at 64x64x32 (about 79% of
the voxels change); the Semantic Genesis code uses 5.

Vectorised formulation (same distribution, no loop over windows or voxels):

1. All windows of the batch are drawn at once (shape, corner, and their place in the write sequence)
   and grouped by shape.
2. For each shape (a short loop: 108 shapes for 64x64x32), every window's destination voxels are
   ``corner + offsets`` and its source voxels ``corner + offsets[perm]``.
3. "Last write wins" is resolved with one ``scatter_reduce(amax)`` of the key
   ``(window_number + 1) << bits | source`` into every destination voxel, initialised with the voxel's
   own index: the maximum key belongs to the last window that covers the voxel (or to no window), and
   its low bits say where the voxel's value comes from.
4. One gather from the original batch produces the output.

Permutations: with ``permutation_bank=0`` each window gets its own independent uniform permutation
(an argsort of random keys, the exact law). With ``permutation_bank=K > 0`` (the default, about 3x faster
on a CPU) a fresh bank of ``K`` uniform permutations per window shape is drawn at every call and each
window uses a random bank entry composed with a random cyclic shift of its voxels: every window's
permutation is still exactly uniform, but two windows of one shape share a permutation with probability
``1 / (K * volume)`` instead of ``1 / volume!``.

Device path (``_backend`` ``"device"``, the default for a batch on a GPU): the windows of every sample
are drawn at once on the batch's device (shape index, corner), and two passes over the windows' voxels
replace the loop. The first finds the last window that covers each voxel (one ``scatter_reduce(amax)``
of the window numbers); a window that keeps no voxel needs no permutation, which at Models Genesis
strength skips most of them in 2D (10,000 windows cover a 224x224 image about 26 times). The second
gives each remaining window a uniform permutation with one sort of all their voxels by the key
``(window, random bits)`` and sends each voxel the source its last window's permutation gives it. Rows
that are not selected (a preset's per-sample decision, on the device) have windows of no voxels. Same
law as ``permutation_bank=0`` (up to ties of the random keys, below 2e-9 per window). The passes work
on ``DEVICE_CHUNK`` voxels at a time; the host reads five small results per call (per pass the total
voxel count and the running totals at the chunk cuts, and the list of windows kept), never one value
per window.

Compiled CPU path (float32/float64 CPU batches when numba is installed, see
:mod:`semantic_genesis.transforms._backend` and ``_plan``): one seed per cube is drawn from the
generator and the kernel draws that cube's windows (same size and corner laws) from a SplitMix64 stream
seeded by it, then visits the windows from the last to the first and gives every voxel that no later
window covers ``original[perm(voxel)]`` with an exact, independent uniform permutation per window
(partial Fisher-Yates). Same law as the reference and as the torch path with ``permutation_bank=0``
(``permutation_bank`` is ignored there); the two paths consume the generator differently, so the same
seed gives different (equally distributed) outputs on the two paths.
"""

from __future__ import annotations

import functools
import itertools

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._draws import ShuffleDraw
from semantic_genesis.transforms._plan import KernelPlan, kernel_fits, run_plan
from semantic_genesis.transforms._random import (
    check_batch,
    device_generator,
    numel,
    resolve_generator,
    sample_or_batch,
    strides,
    uniform,
)

DEVICE_CHUNK = {"cpu": 2**22, "other": 2**23}
"""Window voxels handled by one step of either pass of the device path, on the CPU and on a GPU: bounds
its memory (about 50 bytes each) while keeping the number of steps per call small (on a GPU one or two
per pass for Models Genesis at 32 x 64x64x32, three in the first pass at 32 x 224x224)."""


def window_shapes(shape: tuple[int, ...], size_divisor: int = 10) -> torch.Tensor:
    """All window shapes ``(1..max(1, dim // size_divisor))`` per axis, as an ``(S, D)`` int64 table."""
    ranges = [range(1, max(1, dim // size_divisor) + 1) for dim in shape]
    return torch.tensor(list(itertools.product(*ranges)), dtype=torch.int64)


@functools.lru_cache(maxsize=4096)  # 108 shapes at 64x64x32: a smaller cache would miss every time
def _window_offsets(window: tuple[int, ...], spatial_strides: tuple[int, ...]) -> torch.Tensor:
    """Row-major flat offsets of the voxels of a window relative to its corner, ``(volume,)`` int64."""
    offsets = torch.zeros((1,) * len(window), dtype=torch.int64)
    for axis, (size, stride) in enumerate(zip(window, spatial_strides)):
        view = [1] * len(window)
        view[axis] = size
        offsets = offsets + (torch.arange(size) * stride).view(view)
    return offsets.reshape(-1)


def draw_windows(
    generator: torch.Generator, batch: int, spatial: tuple[int, ...], num_windows: int, size_divisor: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw the windows of ``batch`` cubes (both implementations draw exactly these).

    Window ``w`` belongs to cube ``w // num_windows`` and is written ``(w % num_windows)``-th.

    Returns:
        ``(shapes, shape_of, sizes, corners)``: the ``(S, D)`` shape table, ``(N,)`` shape index of each
        window, and ``(N, D)`` int64 sizes and corners (``N = batch * num_windows``), all on the CPU.
    """
    dims = torch.tensor(spatial, dtype=torch.int64)
    shapes = window_shapes(spatial, size_divisor)
    num_total = batch * num_windows
    shape_of = torch.randint(shapes.shape[0], (num_total,), generator=generator)
    sizes = shapes[shape_of]
    corners = torch.floor(uniform(generator, num_total, len(spatial)) * (dims - sizes + 1)).to(torch.int64)
    return shapes, shape_of, sizes, corners


def _to_device_split(parts: list[torch.Tensor], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``parts`` moved to ``device`` as ``dtype`` in one copy, returned as views of that copy."""
    if not parts:
        return ()
    flat = torch.cat([part.reshape(-1) for part in parts]).to(device=device, dtype=dtype)
    return tuple(view.view(part.shape) for view, part in zip(flat.split([part.numel() for part in parts]), parts))


def _permutations(generator: torch.Generator, count: int, volume: int) -> torch.Tensor:
    """``(count, volume)`` independent uniform permutations of ``range(volume)`` (CPU int64)."""
    if volume == 1:
        return torch.zeros(count, 1, dtype=torch.int64)
    return torch.argsort(torch.rand(count, volume, generator=generator), dim=1)


@sample_or_batch("local_shuffle")
def local_shuffle(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    num_windows: int = 10000,
    size_divisor: int = 10,
    permutation_bank: int = 64,
) -> torch.Tensor:
    """Shuffle the voxels inside many small random windows of every sample.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
            All channels of a voxel move together.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        num_windows: windows per sample (Models Genesis 10,000; Semantic Genesis code 5).
        size_divisor: window size per axis is ``U{1 .. max(1, dim // size_divisor)}``.
        permutation_bank: torch path only: 0 for independent permutations per window, else the size
            of the per-shape bank of fresh permutations (see the module docstring).

    Returns:
        A new batch of the same shape, dtype and device: a permutation of each sample's voxels in
        which every voxel either keeps its value or takes one from inside the last window covering it.
    """
    spatial = check_batch(x, "local_shuffle")
    if num_windows < 0 or size_divisor < 1 or permutation_bank < 0:
        raise ConfigError(
            f"local_shuffle: num_windows ({num_windows}) and permutation_bank ({permutation_bank}) must be "
            f">= 0 and size_divisor ({size_divisor}) >= 1"
        )
    generator = resolve_generator(generator)
    batch = x.shape[0]
    if batch == 0 or num_windows == 0:
        return x.clone()
    if _backend.device_draws(x):
        return shuffle_on_device(x, device_generator(generator, x.device), None, num_windows, size_divisor)
    if kernel_fits(spatial, size_divisor) and _backend.kernel_for(x) is not None:
        seeds = torch.randint(0, 2**62, (batch,), generator=generator)
        draw = ShuffleDraw(torch.arange(batch), seeds, num_windows, size_divisor)
        return run_plan(x, KernelPlan.for_batch(x, shuffle=draw))[0]
    device = x.device
    voxels = numel(spatial)
    total = batch * voxels
    spatial_strides = strides(spatial)

    # 1. All windows of the batch, grouped by shape and, within a shape, in cube order so that the
    # scatter below stays within one cube's memory at a time.
    shapes, shape_of, sizes, corner = draw_windows(generator, batch, spatial, num_windows, size_divisor)
    num_total = batch * num_windows
    corner_local = (corner * torch.tensor(spatial_strides)).sum(dim=1)
    number = torch.arange(num_total)
    cube = number // num_windows
    base = cube * voxels + corner_local
    # stable: within a shape, windows stay in cube order (a small int dtype takes the radix path)
    group_dtype = torch.int16 if shapes.shape[0] < 2**15 else torch.int32
    grouped = torch.argsort(shape_of.to(group_dtype), stable=True)
    counts = torch.bincount(shape_of, minlength=shapes.shape[0])
    base = base[grouped]
    # Key = (write position + 1) << bits | source voxel within the cube; int32 when it fits.
    bits = max(1, (voxels - 1).bit_length())
    key_dtype = torch.int32 if (num_windows + 1) << bits < 2**31 else torch.int64
    order_key = (((number % num_windows) + 1) << bits)[grouped] + corner_local[grouped]
    base_dev = base.to(device)
    order_key_dev = order_key.to(device=device, dtype=key_dtype)

    # 2. Every random draw, on the CPU and in shape order (the generator is consumed exactly as a
    # per-shape loop would). Per-shape tensors go to the device in one copy per kind and are split
    # there: a copy per shape would be a synchronising host-to-device transfer per shape (hundreds
    # per batch on CUDA).
    steps = []  # (first window, window count, volume, uses a bank)
    offsets, exact, banks, picks, shifts = [], [], [], [], []
    start = 0
    for window, count in zip(shapes.tolist(), counts.tolist()):
        if count == 0:
            continue
        shape_offsets = _window_offsets(tuple(window), tuple(spatial_strides))
        volume = shape_offsets.numel()
        small = shape_offsets.to(key_dtype)
        offsets.append(shape_offsets)
        banked = 0 < permutation_bank < count
        if banked:
            banks.append(small[_permutations(generator, permutation_bank, volume)].repeat(1, 2))
            picks.append(torch.randint(permutation_bank, (count,), generator=generator))
            shifts.append(torch.randint(volume, (count,), generator=generator))
        else:
            exact.append(small[_permutations(generator, count, volume)])
        steps.append((start, count, volume, banked))
        start += count
    offsets_dev = iter(_to_device_split(offsets, device, torch.int64))
    exact_dev = iter(_to_device_split(exact, device, key_dtype))
    banks_dev = iter(_to_device_split(banks, device, key_dtype))
    picks_dev = iter(_to_device_split(picks, device, torch.int64))
    shifts_dev = iter(_to_device_split(shifts, device, torch.int64))

    # 3. Destinations, sources and last-write-wins per shape, on the device.
    winner = torch.arange(voxels, dtype=key_dtype, device=device).expand(batch, voxels).reshape(-1)
    for start, count, volume, banked in steps:
        if banked:
            bank, pick, shift = next(banks_dev), next(picks_dev), next(shifts_dev)
            # row `pick`, cyclically shifted by `shift`: a (count, volume) copy of contiguous rows
            source = bank[:, :-1].unfold(1, volume, 1)[pick, shift]
        else:
            source = next(exact_dev)
        destination = base_dev[start : start + count, None] + next(offsets_dev)
        key = order_key_dev[start : start + count, None] + source
        winner.scatter_reduce_(0, destination.reshape(-1), key.reshape(-1), reduce="amax")

    # 4. Gather from the original batch (untouched voxels point at themselves).
    local = winner.view(batch, voxels).bitwise_and_((1 << bits) - 1)
    index_dtype = torch.int32 if total < 2**31 else torch.int64
    cube_start = (torch.arange(batch, device=device, dtype=index_dtype) * voxels).view(batch, 1)
    return _take_voxels(x, (local.to(index_dtype) + cube_start).view(-1))


def _take_voxels(x: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
    """The batch ``x`` ``(B, C, *spatial)`` with voxel ``v`` (flat over the batch, all channels together)
    taken from voxel ``source_index[v]``."""
    if x.shape[1] == 1:
        return x.reshape(-1).index_select(0, source_index).view(x.shape)
    values = x.movedim(1, -1).reshape(-1, x.shape[1]).index_select(0, source_index)
    return values.view((x.shape[0],) + tuple(x.shape[2:]) + (x.shape[1],)).movedim(-1, 1).contiguous()


@functools.lru_cache(maxsize=32)
def _device_window_table(
    spatial: tuple[int, ...], size_divisor: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window shapes on ``device`` (made once): ``(sizes (S, D), volumes (S,), offsets (S, Vmax), dims (D,))``,
    int64; ``offsets[s, k]`` is the flat offset of voxel ``k`` of shape ``s`` for ``k < volumes[s]``, 0 after."""
    shapes = window_shapes(spatial, size_divisor)
    spatial_strides = tuple(strides(spatial))
    rows = [_window_offsets(tuple(shape), spatial_strides) for shape in shapes.tolist()]
    largest = max(row.numel() for row in rows)
    offsets = torch.zeros(len(rows), largest, dtype=torch.int64)
    for i, row in enumerate(rows):
        offsets[i, : row.numel()] = row
    volumes = torch.tensor([row.numel() for row in rows], dtype=torch.int64)
    dims = torch.tensor(spatial, dtype=torch.int64)
    return shapes.to(device), volumes.to(device), offsets.to(device), dims.to(device)


def shuffle_on_device(
    x: torch.Tensor, generator: torch.Generator, selected: torch.Tensor | None, num_windows: int, size_divisor: int
) -> torch.Tensor:
    """Local shuffle with every draw on ``x``'s device (the device path, see the module docstring).

    Args:
        x: ``(B, C, *spatial)`` batch, not modified.
        generator: a generator on ``x``'s device.
        selected: ``(B,)`` bool on the device, the rows to shuffle (others are returned unchanged), or
            None for every row.
        num_windows, size_divisor: as :func:`local_shuffle`.

    Returns:
        A new batch shaped like ``x``.
    """
    device = x.device
    batch = x.shape[0]
    spatial = tuple(int(s) for s in x.shape[2:])
    voxels = numel(spatial)
    if batch == 0 or num_windows == 0:
        return x.clone()
    sizes_table, volumes, offsets, dims = _device_window_table(spatial, size_divisor, device)
    total_windows = batch * num_windows
    shape_of = torch.randint(sizes_table.shape[0], (total_windows,), generator=generator, device=device)
    sizes = sizes_table[shape_of]
    corner = torch.floor(uniform(generator, total_windows, len(spatial)) * (dims - sizes + 1)).to(torch.int64)
    corner_local = corner[:, 0]
    for axis in range(1, len(spatial)):
        corner_local = corner_local * spatial[axis] + corner[:, axis]
    number = torch.arange(total_windows, device=device)
    first = (number // num_windows) * voxels + corner_local
    volume = volumes[shape_of]
    if selected is not None:  # an unselected row's windows have no voxel
        volume = volume * selected[:, None].expand(batch, num_windows).reshape(-1)
    limit = DEVICE_CHUNK["cpu" if device.type == "cpu" else "other"]

    # 1. The last window that covers each voxel (-1: none), without permutations; the per-voxel tables
    # are int32 when they can be (half the memory traffic).
    small = torch.int32 if max(batch * voxels, total_windows) < 2**31 - 1 else torch.int64
    last = torch.full((batch * voxels,), -1, dtype=small, device=device)
    for begin, end, size in _window_chunks(volume, limit, total_windows):
        slot, voxel = _window_voxels(number[begin:end], volume[begin:end], size, first, shape_of, offsets)
        last.scatter_reduce_(0, voxel, (slot + begin).to(small), reduce="amax")  # window number = begin + slot

    # 2. Permutations only for the windows that keep a voxel; each voxel takes its source from the
    # permutation of its last window.
    alive = torch.zeros(total_windows + 1, dtype=torch.bool, device=device)
    alive[last.to(torch.int64) + 1] = True  # slot 0 takes the voxels no window covers
    live = torch.nonzero(alive[1:]).flatten()
    live_volume = volume[live]
    discard = batch * voxels
    source_of = torch.arange(discard + 1, device=device, dtype=small)
    for begin, end, size in _window_chunks(live_volume, limit, 1 << (62 - PERMUTATION_KEY_BITS)):
        slot, voxel = _window_voxels(live[begin:end], live_volume[begin:end], size, first, shape_of, offsets)
        # key = (window within the chunk, random bits): one sort orders each window's voxels at random
        noise = torch.randint(0, 1 << PERMUTATION_KEY_BITS, (size,), generator=generator, device=device)
        order = torch.sort((slot << PERMUTATION_KEY_BITS) | noise, stable=True).indices
        destination = torch.where(last[voxel] == live[begin:end][slot], voxel, discard)
        source_of.scatter_(0, destination, voxel[order].to(small))
    return _take_voxels(x, source_of[:discard])


PERMUTATION_KEY_BITS = 46
"""Random bits of a voxel's sort key in the device path: two voxels of a window of ``n`` tie (and keep
their order) with probability about ``n^2 / 2^47``, below 2e-9 for the largest 22x22 window of a 224x224
image."""


def _window_chunks(volume: torch.Tensor, limit: int, max_windows: int) -> list[tuple[int, int, int]]:
    """Consecutive ranges ``[begin, end)`` of windows, cut where the running total of ``volume`` passes a
    multiple of ``limit`` and every ``max_windows`` windows, with their voxel counts (so a range holds
    at most ``limit`` voxels plus one window); empty ranges are left out. Two host synchronisations
    (the total, then the cuts' running totals; not one value per window)."""
    count = volume.shape[0]
    if count == 0:
        return []
    ends = torch.cumsum(volume, 0)
    total = int(ends[-1])
    cuts = torch.arange(1, (count - 1) // max_windows + 1, device=volume.device) * max_windows
    if total > limit:
        passes = torch.arange(1, (total - 1) // limit + 1, device=volume.device) * limit
        cuts = torch.cat((cuts, torch.searchsorted(ends, passes, right=True)))
    cuts = torch.cat((cuts.clamp(1, count), torch.tensor([count], device=volume.device))).sort().values
    bounds = torch.stack((cuts, ends[cuts - 1])).tolist()  # a repeated cut gives an empty range
    chunks, begin, done = [], 0, 0
    for end, running in zip(*bounds):
        if running > done:
            chunks.append((begin, end, running - done))
        begin, done = end, running
    return chunks


def _window_voxels(
    ids: torch.Tensor, volume: torch.Tensor, size: int, first: torch.Tensor, shape_of: torch.Tensor,
    offsets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every voxel of the windows ``ids`` (``volume[i]`` voxels each, ``size`` in all), window by window in
    row-major order: ``(slot, voxel)``, the position in ``ids`` of each voxel's window (int64) and its flat
    index in the batch (``first[w] + offsets[shape_of[w], k]`` for window ``w = ids[slot]``). Without a
    host synchronisation: a window's voxels start where the running total of the volumes before it ends."""
    starts = torch.cumsum(volume, 0) - volume
    marks = torch.zeros(size + 1, dtype=torch.int64, device=ids.device)
    marks.index_add_(0, starts, torch.ones_like(starts))  # windows of volume 0 share the next one's start
    slot = torch.cumsum(marks[:size], 0) - 1
    owner = ids[slot]
    k = torch.arange(size, device=ids.device) - starts[slot]
    return slot, first[owner] + offsets[shape_of[owner], k]
