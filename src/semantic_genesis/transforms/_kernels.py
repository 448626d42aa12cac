"""Compiled CPU kernels (numba) of the self-restoration transforms.

Imported lazily by :mod:`semantic_genesis.transforms._backend`, only when a transform runs on a CPU
tensor, so that importing the package (and ``semantic-genesis --help``) never pays for numba.

The kernels *apply* parameters that the transforms drew from their ``torch.Generator`` (window corners
and sizes, window counts, curve tables, fill constants). Only bulk randomness is generated inside: the
permutation of each shuffled window and the per-voxel painting noise come from a SplitMix64 stream
seeded by one draw of the generator, exactly as the torch path seeds a device generator for its bulk
noise. The same generator seed therefore gives the same output on every call.

All kernels work on ``(B, C, V)`` views of contiguous batches (V = voxels of a sample) and on the rows
``rows[i]`` of the batch, and modify ``dst`` in place. Spatial positions use a 3D layout ``(X, Y, Z)``;
2D images are passed as ``(H, W, 1)``. Compiled functions are cached on disk (``cache=True``); the first
call in a fresh environment compiles them (about a second each).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always", cache=True)
def _mix(z):
    """SplitMix64 finaliser (a bijection of uint64 with good avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
def _stream(seed, index):
    """Initial state of the independent stream number ``index`` of ``seed``."""
    return _mix(np.uint64(seed) + _GAMMA * np.uint64(index + 1))


@njit(inline="always", cache=True)
def _draw16(state, pool, left, n):
    """Uniform integer on ``0 .. n - 1`` (``1 <= n <= 2**16``) from 16-bit chunks of the stream.

    ``pool`` holds ``left`` unused 16-bit chunks of the last 64-bit output. Lemire's multiply-shift with
    rejection (probability below ``n / 2**16``) makes the law exact. Returns ``(state, pool, left, r)``.
    """
    n = np.uint64(n)
    while True:
        if left == 0:
            state = state + _GAMMA
            pool = _mix(state)
            left = 4
        m = (pool & np.uint64(0xFFFF)) * n
        pool = pool >> np.uint64(16)
        left -= 1
        low = m & np.uint64(0xFFFF)
        if low >= n or low >= (np.uint64(0x10000) - n) % n:
            return state, pool, left, np.int64(m >> np.uint64(16))


@njit(cache=True, nogil=True)
def shuffle_windows(src, dst, rows, seeds, num_windows, dims, max_size, keep_of, keep_corners, keep_sizes,
                    keep_counts):
    """Local pixel shuffling with last-write-wins windows, one cube at a time.

    Args:
        src: ``(B, C, V)`` original values (read only).
        dst: ``(B, C, V)`` output, equal to ``src`` on the rows ``rows`` on entry; covered voxels are
            overwritten. Must not share memory with ``src``.
        rows: ``(n,)`` int64 batch rows.
        seeds: ``(n,)`` int64 seed of each cube's stream (drawn from the transform's generator).
        num_windows: windows per cube.
        dims: ``(3,)`` int64 spatial shape ``(X, Y, Z)``.
        max_size: ``(3,)`` int64 largest window size per axis (``max(1, dim // size_divisor)``).
        keep_of, keep_corners, keep_sizes, keep_counts: ``keep_of[row] = j >= 0`` restricts row ``row``
            to the union of the boxes ``keep_corners[j, :keep_counts[j]]`` / ``keep_sizes[j]`` (``(M, W, 3)``
            int32): voxels outside are left alone (a later out-painting overwrites them). ``keep_of`` may
            be empty (no restriction).

    Per cube, ``num_windows`` windows are drawn in write order from the cube's stream: size
    ``U{1 .. max_size}`` and corner ``U{0 .. dim - size}`` per axis, as the reference. They are then
    visited from the last to the first and only voxels that no later window wrote are filled: voxel ``d``
    receives ``src[perm_w(d)]`` for its last window ``w``. The sources of the ``k`` voxels a window keeps
    are the first ``k`` steps of a Fisher-Yates shuffle of the window's ``n`` voxels, i.e. a uniform
    injection, which is exactly the law of a uniform permutation of the window restricted to those
    voxels; windows stay independent. Cost: one random draw per covered voxel instead of one per window
    voxel, and no branch on whether a voxel is still free. On a restricted row, a window that overlaps
    none of the kept boxes is not scanned (all its voxels count as written later, so scanning it would
    keep and draw nothing: the output is the same, for about 60% fewer voxel visits on an out-painted
    cube).
    """
    channels = src.shape[1]
    voxels = src.shape[2]
    stride0 = dims[1] * dims[2]
    stride1 = dims[2]
    # Shape table: window shape k has sizes (shape_x[k], shape_y[k], shape_z[k]) and the flat offsets
    # offsets[k, :volume] of its voxels from its corner, so that the scan below is one flat loop per
    # window (a branch misprediction per window rather than per window row).
    num_shapes = max_size[0] * max_size[1] * max_size[2]
    largest = num_shapes  # the largest window has one voxel per shape
    shape_x = np.empty(num_shapes, np.int64)
    shape_y = np.empty(num_shapes, np.int64)
    shape_z = np.empty(num_shapes, np.int64)
    offsets = np.empty((num_shapes, largest), np.int32)
    k = 0
    for sx in range(1, max_size[0] + 1):
        for sy in range(1, max_size[1] + 1):
            for sz in range(1, max_size[2] + 1):
                shape_x[k] = sx
                shape_y[k] = sy
                shape_z[k] = sz
                q = 0
                for a in range(sx):
                    for b in range(sy):
                        for c in range(sz):
                            offsets[k, q] = a * stride0 + b * stride1 + c
                            q += 1
                k += 1
    stamp = np.zeros(voxels, np.uint8)
    source = np.empty(largest, np.int64)
    target = np.empty(largest, np.int64)
    shape_of = np.empty(num_windows, np.int64)
    corner = np.empty(num_windows, np.int64)
    corner_xyz = np.empty((num_windows, 3), np.int64)
    box_low = np.empty((keep_corners.shape[1], 3), np.int64)
    box_high = np.empty((keep_corners.shape[1], 3), np.int64)
    mark = np.uint8(0)
    for i in range(rows.shape[0]):
        row = rows[i]
        if mark == 255:
            stamp[:] = 0
            mark = np.uint8(0)
        mark += np.uint8(1)
        num_boxes = 0
        if keep_of.shape[0] > 0 and keep_of[row] >= 0:
            # voxels outside the kept boxes behave as if a later window had written them
            stamp[:] = mark
            j = keep_of[row]
            _mark_boxes(stamp, np.uint8(0), j, keep_corners, keep_sizes, keep_counts, dims)
            num_boxes = keep_counts[j]
            for b in range(num_boxes):
                for axis in range(3):
                    box_low[b, axis] = keep_corners[j, b, axis]
                    box_high[b, axis] = keep_corners[j, b, axis] + keep_sizes[j, b, axis]
        src_row = src[row, 0]
        dst_row = dst[row, 0]
        state = _stream(seeds[i], 0)
        pool = np.uint64(0)
        left = 0
        # 1. The windows in write order: a uniform shape (= independent uniform sizes per axis), then
        # a uniform corner per axis.
        for w in range(num_windows):
            state, pool, left, k = _draw16(state, pool, left, num_shapes)
            state, pool, left, cx = _draw16(state, pool, left, dims[0] - shape_x[k] + 1)
            state, pool, left, cy = _draw16(state, pool, left, dims[1] - shape_y[k] + 1)
            state, pool, left, cz = _draw16(state, pool, left, dims[2] - shape_z[k] + 1)
            shape_of[w] = k
            corner[w] = cx * stride0 + cy * stride1 + cz
            corner_xyz[w, 0] = cx
            corner_xyz[w, 1] = cy
            corner_xyz[w, 2] = cz
        # 2. Last write wins: from the last window to the first.
        for w in range(num_windows - 1, -1, -1):
            k = shape_of[w]
            if num_boxes > 0 and not _overlaps_any(corner_xyz[w], shape_x[k], shape_y[k], shape_z[k],
                                                   box_low, box_high, num_boxes):
                continue
            n = shape_x[k] * shape_y[k] * shape_z[k]
            base = corner[w]
            if n == 1:
                stamp[base] = mark  # a one-voxel window keeps its value (and hides earlier windows)
                continue
            kept = 0
            for q in range(n):
                p = base + offsets[k, q]
                source[q] = p
                target[kept] = p
                kept += stamp[p] != mark
                stamp[p] = mark
            for t in range(kept):
                state, pool, left, r = _draw16(state, pool, left, n - t)
                r += t
                s = source[r]
                source[r] = source[t]  # position t is final: only its value s is needed
                d = target[t]
                if channels == 1:
                    dst_row[d] = src_row[s]  # 1D views: measurably faster than 3D indexing
                else:
                    for ch in range(channels):
                        dst[row, ch, d] = src[row, ch, s]


@njit(inline="always", cache=True)
def _overlaps_any(low, size_x, size_y, size_z, box_low, box_high, num_boxes):
    """Whether the window at ``low`` (3,) of the given size meets any of the first ``num_boxes`` boxes
    ``[box_low[b], box_high[b])``."""
    high_x, high_y, high_z = low[0] + size_x, low[1] + size_y, low[2] + size_z
    for b in range(num_boxes):
        if (low[0] < box_high[b, 0] and box_low[b, 0] < high_x and low[1] < box_high[b, 1]
                and box_low[b, 1] < high_y and low[2] < box_high[b, 2] and box_low[b, 2] < high_z):
            return True
    return False


@njit(cache=True, nogil=True)
def paint_boxes(dst, rows, corners, sizes, counts, dims, inside, constants, use_constant, bits, seed):
    """In-painting (``inside=True``) or out-painting (``inside=False``) in place.

    Args:
        dst: ``(B, C, V)`` batch, modified on the rows ``rows``.
        rows: ``(n,)`` int64 batch rows.
        corners, sizes: ``(n, W, 3)`` int32 boxes; the first ``counts[i]`` boxes of cube ``i`` are active.
        counts: ``(n,)`` int64 active boxes per cube.
        dims: ``(3,)`` int64 spatial shape.
        inside: paint the union of the active boxes (True) or everything outside it (False).
        constants: ``(n,)`` fill value per cube, used when ``use_constant``.
        use_constant: fill with ``constants[i]`` instead of uniform noise in [0, 1) per voxel and channel.
        bits: noise resolution, 24 for float32 and 53 for float64 (values ``k / 2**bits``, exact in
            ``dst``'s dtype).
        seed: uint64-range int seeding the noise.

    The noise is counter-based: voxel ``p`` of channel ``ch`` of cube ``i`` gets the top ``bits`` bits
    of ``mix(stream(seed, i * C + ch) + (p + 1) * gamma)``. Its value depends on nothing but its
    position, so overlapping in-painting boxes can be written box by box, and out-painting is one
    branch-free (vectorised) pass that selects noise or the old value by the kept-box mask.
    """
    channels = dst.shape[1]
    voxels = dst.shape[2]
    shift = np.uint64(64 - bits)
    scale = 1.0 / float(np.uint64(1) << np.uint64(bits))
    stride0 = dims[1] * dims[2]
    stride1 = dims[2]
    kept = np.zeros(0 if inside else voxels, np.uint8)
    for i in range(rows.shape[0]):
        row = rows[i]
        fill = constants[i]
        if not inside:
            kept[:] = 0
            _mark_boxes(kept, np.uint8(1), i, corners, sizes, counts, dims)
        for ch in range(channels):
            out = dst[row, ch]
            stream = _stream(seed, i * channels + ch)
            if inside:
                for w in range(counts[i]):
                    corner = corners[i, w, 0] * stride0 + corners[i, w, 1] * stride1 + corners[i, w, 2]
                    for a in range(sizes[i, w, 0]):
                        for b in range(sizes[i, w, 1]):
                            start = corner + a * stride0 + b * stride1
                            for p in range(start, start + sizes[i, w, 2]):
                                out[p] = fill if use_constant else _counter_uniform(stream, p, shift, scale)
            elif use_constant:
                for p in range(voxels):
                    out[p] = out[p] if kept[p] else fill
            else:
                for p in range(voxels):
                    noise = _counter_uniform(stream, p, shift, scale)
                    out[p] = out[p] if kept[p] else noise


@njit(inline="always", cache=True)
def _mark_boxes(stamp, value, i, corners, sizes, counts, dims):
    """``stamp[p] = value`` inside the first ``counts[i]`` boxes ``corners[i]``, ``sizes[i]``."""
    stride0 = dims[1] * dims[2]
    stride1 = dims[2]
    for w in range(counts[i]):
        corner = corners[i, w, 0] * stride0 + corners[i, w, 1] * stride1 + corners[i, w, 2]
        for a in range(sizes[i, w, 0]):
            for b in range(sizes[i, w, 1]):
                start = corner + a * stride0 + b * stride1
                for c in range(sizes[i, w, 2]):
                    stamp[start + c] = value


@njit(cache=True, nogil=True)
def flip_rows(src, dst, parity, copy, dims):
    """``dst[b] = copy[b] = src[b]`` flipped along the spatial axes where ``parity[b]`` (``(B, 3)`` uint8).

    ``src``, ``dst``, ``copy``: ``(B, C, V)`` views of contiguous batches, no shared memory; ``dims``
    ``(3,)`` the spatial shape ``(X, Y, Z)`` (2D images as ``(H, W, 1)``). The preset's target and its
    working copy are written in one pass that reads ``src`` once; lines along z are addressed by flat
    offsets (creating a numba view per line cost as much as the copy).
    """
    size_x, size_y, size_z = dims[0], dims[1], dims[2]
    for row in range(src.shape[0]):
        fx, fy, fz = parity[row, 0], parity[row, 1], parity[row, 2]
        for ch in range(src.shape[1]):
            line_in = src[row, ch]
            line_out = dst[row, ch]
            line_copy = copy[row, ch]
            for i in range(size_x):
                si = size_x - 1 - i if fx else i
                for j in range(size_y):
                    sj = size_y - 1 - j if fy else j
                    read = (si * size_y + sj) * size_z
                    write = (i * size_y + j) * size_z
                    if fz:
                        for k in range(size_z):
                            value = line_in[read + size_z - 1 - k]
                            line_out[write + k] = value
                            line_copy[write + k] = value
                    else:
                        for k in range(size_z):
                            value = line_in[read + k]
                            line_out[write + k] = value
                            line_copy[write + k] = value


@njit(cache=True, nogil=True)
def bezier_luts(controls, inverted, curve_points, lut_size, lut):
    """Fill ``lut`` ``(n, lut_size + 1)`` float64 with the non-linear maps (``nonlinear.sample_nonlinear_luts``).

    Args:
        controls: ``(n, 2, 2)`` float64 control points ``(a1, b1), (a2, b2)``.
        inverted: ``(n,)`` bool, the inverted branch.
        curve_points: t samples per curve.
        lut_size: table intervals; ``lut[i, j]`` is the map at ``j / lut_size``.

    Same construction as the torch code: the reversed-Bernstein curve sampled at ``curve_points`` values
    of t, its x (and, unless inverted, y) samples sorted ascending (a reversal plus a running maximum,
    the samples being non-increasing up to rounding), then ``np.interp`` at the grid by a merge walk.
    """
    xs = np.empty(curve_points)
    ys = np.empty(curve_points)
    step = 1.0 / (curve_points - 1)
    for i in range(controls.shape[0]):
        a1, b1 = controls[i, 0, 0], controls[i, 0, 1]
        a2, b2 = controls[i, 1, 0], controls[i, 1, 1]
        # t = 0 gives P3 = (1, 1) and t = 1 gives P0 = (0, 0); index q holds t = 1 - q * step (reversed)
        xmax = 0.0
        ymax = 0.0
        for q in range(curve_points):
            t = 1.0 - q * step if q < curve_points - 1 else 0.0
            u = 1.0 - t
            w0 = t * t * t
            w1 = 3.0 * t * t * u
            w2 = 3.0 * t * u * u
            w3 = u * u * u
            # P0 = (0, 0) weighs w0, P1 = (a1, b1) w1, P2 = (a2, b2) w2, P3 = (1, 1) w3
            x = w1 * a1 + w2 * a2 + w3
            y = w1 * b1 + w2 * b2 + w3
            xmax = max(xmax, x) if q > 0 else x
            ymax = max(ymax, y) if q > 0 else y
            xs[q] = xmax
            ys[q] = ymax
        if inverted[i]:
            # the reference pairs ascending x with the *unsorted* y (descending along ascending x)
            for q in range(curve_points):
                t = q * step if q < curve_points - 1 else 1.0
                u = 1.0 - t
                ys[q] = 3.0 * t * t * u * b1 + 3.0 * t * u * u * b2 + u * u * u
        right = 1
        last = curve_points - 1
        for j in range(lut_size + 1):
            value = j / lut_size
            if value <= xs[0]:
                lut[i, j] = ys[0]
                continue
            if value >= xs[last]:
                lut[i, j] = ys[last]
                continue
            while right < last and xs[right] <= value:
                right += 1
            x0 = xs[right - 1]
            span = xs[right] - x0
            w = (value - x0) / span if span > 0 else 0.0
            w = min(max(w, 0.0), 1.0)
            lut[i, j] = ys[right - 1] + w * (ys[right] - ys[right - 1])


@njit(cache=True, nogil=True, fastmath={"contract"})  # fused multiply-add: ~7% here
def apply_luts(dst, rows, lut, slope, scale, keep_of, keep_corners, keep_sizes, keep_counts, dims):
    """Map every value of row ``rows[i]`` through the table ``lut[i]``, in place.

    Args:
        dst: ``(B, C, V)`` batch.
        rows: ``(n,)`` int64 batch rows.
        lut: ``(n, L + 1)`` the map at ``j / L``, same dtype as ``dst``.
        slope: ``(n, L + 1)`` ``lut[:, j + 1] - lut[:, j]`` (0 in the last column).
        scale: ``L`` as a scalar of ``dst``'s dtype (the arithmetic stays in that dtype).
        keep_of, keep_corners, keep_sizes, keep_counts: as :func:`shuffle_windows`: voxels outside
            the kept boxes are skipped.
        dims: ``(3,)`` int64 spatial shape.

    Values are clamped to [0, 1] first; NaN stays NaN. A restricted row visits only the z-span of the
    kept boxes on each ``(x, y)`` line (about a third of an out-painted cube's voxels).
    """
    zero = scale - scale
    one = zero + 1
    restrictable = keep_of.shape[0] > 0
    lines = dims[0] * dims[1]
    keep = np.zeros(dst.shape[2] if restrictable else 0, np.uint8)
    span_low = np.empty(lines if restrictable else 0, np.int64)
    span_high = np.empty(lines if restrictable else 0, np.int64)
    for i in range(rows.shape[0]):
        row = rows[i]
        restricted = restrictable and keep_of[row] >= 0
        if restricted:
            j = keep_of[row]
            keep[:] = 0
            _mark_boxes(keep, np.uint8(1), j, keep_corners, keep_sizes, keep_counts, dims)
            span_low[:] = dims[2]
            span_high[:] = 0
            for b in range(keep_counts[j]):
                low_z = keep_corners[j, b, 2]
                high_z = low_z + keep_sizes[j, b, 2]
                for a in range(keep_sizes[j, b, 0]):
                    for c in range(keep_sizes[j, b, 1]):
                        line = (keep_corners[j, b, 0] + a) * dims[1] + keep_corners[j, b, 1] + c
                        span_low[line] = min(span_low[line], low_z)
                        span_high[line] = max(span_high[line], high_z)
        table = lut[i]
        slopes = slope[i]
        for ch in range(dst.shape[1]):
            values = dst[row, ch]
            if not restricted:
                for p in range(values.shape[0]):
                    values[p] = _lut_map(values[p], table, slopes, zero, one, scale)
                continue
            for line in range(lines):
                start = line * dims[2]
                for p in range(start + span_low[line], start + span_high[line]):
                    v = values[p]
                    mapped = _lut_map(v, table, slopes, zero, one, scale)
                    values[p] = mapped if keep[p] else v  # a gap between two boxes on the line


@njit(inline="always", cache=True, fastmath={"contract"})
def _lut_map(v, table, slopes, zero, one, scale):
    """``v`` clamped to [0, 1] and mapped through ``table`` by linear interpolation; NaN stays NaN.

    Written without branches (selects only): NaN takes index 0 and is restored at the end.
    """
    c = v if v > zero else zero
    c = c if c < one else one
    position = c * scale
    base = np.floor(position)
    j = np.int64(base)
    mapped = table[j] + (position - base) * slopes[j]
    return mapped if v == v else v


@njit(cache=True, nogil=True)
def uniform_noise(out, seed, low, high):
    """Fill the flat float array ``out`` with i.i.d. uniform values in ``[low, high)``.

    Counter-based like :func:`paint_boxes`: value ``p`` is the top 24 bits of
    ``mix(stream(seed, 0) + (p + 1) * gamma)`` scaled to the interval (a branch-free, vectorised loop;
    24 bits is float32's resolution, as ``torch.rand``).
    """
    stream = _stream(seed, 0)
    shift = np.uint64(40)
    scale = (high - low) / 16777216.0
    for p in range(out.shape[0]):
        out[p] = low + _counter_uniform(stream, p, shift, scale)


@njit(inline="always", cache=True)
def _counter_uniform(stream, p, shift, scale):
    """Value ``p`` of a counter-based stream: the top ``64 - shift`` bits of
    ``mix(stream + (p + 1) * gamma)`` times ``scale`` (a function of ``p`` alone, so loops over it
    vectorise and overlapping writes agree)."""
    return float(_mix(stream + _GAMMA * np.uint64(p + 1)) >> shift) * scale


@njit(inline="always", cache=True)
def _reflect_clip(position, size):
    """``grid_sample(padding_mode="reflection", align_corners=False)`` on one unnormalised coordinate:
    reflected about the borders half a voxel outside the edge voxels (scipy's ``"reflect"``), then
    clipped to ``[0, size - 1]``."""
    shifted = abs(position + 0.5)
    flips = np.floor(shifted / size)
    extra = shifted - flips * size
    reflected = extra - 0.5 if flips % 2 == 0 else size - extra - 0.5
    return min(max(reflected, 0.0), size - 1.0)


@njit(cache=True, nogil=True, fastmath={"contract"})  # fused multiply-add: ~7% here
def warp_inplane(src, dst, displacement, dims):
    """Bilinear resampling of every ``(x, y)`` plane at ``(x + dx, y + dy)``, scipy-``reflect`` borders.

    Args:
        src: ``(B, C, V)`` view of a contiguous ``(B, C, X, Y, Z)`` batch (2D images: ``Z = 1``), read only.
        dst: same shape, written; no shared memory with ``src``.
        displacement: ``(B, 2, V)`` float32 voxels along X and Y (Z is not displaced).
        dims: ``(3,)`` int64 spatial shape ``(X, Y, Z)``.

    The same arithmetic as ``elastic.warp`` (``grid_sample`` bilinear, reflection padding,
    ``align_corners=False``) without building the normalised grid: one pass over the voxels, with the
    reflection computed only for the few positions that leave the plane.
    """
    size_x, size_y, size_z = dims[0], dims[1], dims[2]
    high_x = size_x - 1.0
    high_y = size_y - 1.0
    plane = size_y * size_z
    for b in range(src.shape[0]):
        shift_x = displacement[b, 0]
        shift_y = displacement[b, 1]
        for i in range(size_x):
            for j in range(size_y):
                start = (i * size_y + j) * size_z
                for k in range(size_z):
                    p = start + k
                    r = i + np.float64(shift_x[p])
                    c = j + np.float64(shift_y[p])
                    if not (0.0 <= r <= high_x):
                        r = _reflect_clip(r, size_x)
                    if not (0.0 <= c <= high_y):
                        c = _reflect_clip(c, size_y)
                    r0 = int(r)
                    c0 = int(c)
                    fr = r - r0
                    fc = c - c0
                    step_r = plane if r0 < size_x - 1 else 0
                    step_c = size_z if c0 < size_y - 1 else 0
                    q = r0 * plane + c0 * size_z + k
                    for ch in range(src.shape[1]):
                        top = src[b, ch, q] * (1.0 - fc) + src[b, ch, q + step_c] * fc
                        bottom = src[b, ch, q + step_r] * (1.0 - fc) + src[b, ch, q + step_r + step_c] * fc
                        dst[b, ch, p] = top * (1.0 - fr) + bottom * fr
