"""Compiled CPU kernels (numba) of the self-restoration transforms.

Imported lazily by :mod:`semantic_genesis.transforms._backend`, only when a transform runs on a CPU
tensor, so that importing the package (and ``semantic-genesis --help``) never pays for numba.

The kernels *apply* parameters that the transforms drew from their ``torch.Generator`` (window counts,
curve control points, painting boxes, fill constants). Only bulk randomness is generated inside: the
windows and permutations of a shuffled sample and the per-voxel painting noise come from SplitMix64
streams seeded by one draw of the generator, exactly as the torch path seeds a device
generator for its bulk noise. The same generator seed therefore gives the same output on every call.

:func:`restore_rows` runs every restoration stage of a batch (elastic warp, flip, local shuffle,
intensity map, in-/out-painting; ``_plan.run_plan`` prepares its arguments), :func:`bezier_tables` builds
the intensity maps, :func:`warp_inplane` resamples a whole batch for the elastic deformation
(:func:`warp_sample` one sample, also inside ``restore_rows``). They work on ``(B, C, V)`` views of
contiguous batches (V = voxels of a sample); ``restore_rows`` uses the spatial layout ``(X, Y, Z)`` with
Z contiguous (2D images as ``(1, H, W)``), the warp displaces the first two axes (2D images as ``(H, W,
1)``). Array indices in hot loops are unsigned (:func:`_u`). Compiled
functions are cached on disk (``cache=True``); the first call in a fresh environment compiles them
(tens of seconds on a slow machine).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always", cache=True)
def _u(index):
    """``index`` as an unsigned integer for array indexing: numba then skips the negative-index
    wraparound, which otherwise costs a compare per access and keeps LLVM from vectorising short loops
    (a copy of 32-voxel lines ran 7x slower)."""
    return np.uint64(index)


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


STREAM_WORDS = 512
"""64-bit outputs of a stream computed at a time by :func:`_refill` (4 KiB, 2,048 16-bit chunks)."""


@njit(inline="always", cache=True)
def _refill(words, state):
    """The next ``len(words)`` outputs ``mix(state + i * gamma)``, ``i = 1, 2, ..``, of the stream whose
    last consumed counter is ``state``; returns the new last counter. A function of ``i`` alone, so the
    loop vectorises (several SplitMix64 outputs per instruction where the CPU has 64-bit vector
    multiplies), unlike drawing one output at a time."""
    for i in range(words.shape[0]):
        words[_u(i)] = _mix(state + _GAMMA * np.uint64(i + 1))
    return state + _GAMMA * np.uint64(words.shape[0])


@njit(inline="always", cache=True)
def _draw16(words, chunks, position, state, n):
    """Uniform integer on ``0 .. n - 1`` (``1 <= n <= 2**16``) from the next 16-bit chunk of a stream.

    ``chunks`` is ``words`` (filled by :func:`_refill`) viewed as uint16, so the chunks of one 64-bit
    output come from its low bits up; ``position`` is the next unused chunk (``len(chunks)``: none
    left). Lemire's multiply-shift with rejection (probability below ``n / 2**16``) makes the law
    exact. Returns ``(position, state, r)``.
    """
    n = np.uint64(n)
    while True:
        if position == chunks.shape[0]:
            state = _refill(words, state)
            position = 0
        m = np.uint64(chunks[_u(position)]) * n
        position += 1
        low = m & np.uint64(0xFFFF)
        if low >= n or low >= (np.uint64(0x10000) - n) % n:
            return position, state, np.int64(m >> np.uint64(16))


@njit(inline="always", cache=True)
def _reserve16(words, chunks, position, state, needed):
    """Make at least ``needed`` (``<= len(chunks) - 4``) unused chunks available from ``position`` on:
    the unread words move to the front and the stream fills the rest, so the chunk sequence is
    unchanged. Returns ``(position, state)``."""
    if chunks.shape[0] - position < needed:
        word = position >> 2
        keep = words.shape[0] - word
        for i in range(keep):
            words[_u(i)] = words[_u(word + i)]
        state = _refill(words[keep:], state)
        position &= 3
    return position, state


@njit(cache=True, nogil=True)
def _redraw16(words, chunks, position, state, n, m, needed):
    """The rare end of a fast draw ``m = chunk * n`` (see the Fisher-Yates loop of :func:`_shuffle_sources`)
    whose low 16 bits fell below ``n``: ``m`` itself if Lemire's test accepts it, else the product of the
    next accepted chunk, as :func:`_draw16`. The rejected chunks are taken from the draws reserved for
    later, so ``needed`` chunks are reserved again afterwards. Returns ``(position, state, m)``."""
    n = np.uint64(n)
    while (m & np.uint64(0xFFFF)) < (np.uint64(0x10000) - n) % n:
        if position == chunks.shape[0]:
            state = _refill(words, state)
            position = 0
        m = np.uint64(chunks[_u(position)]) * n
        position += 1
    position, state = _reserve16(words, chunks, position, state, needed)
    return position, state, m


# --------------------------------------------------------------------------------------------------
# The restoration stages of one batch in one call: flip, local shuffle, intensity map, painting.
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath={"contract"})  # fused multiply-add in the intensity map
def restore_rows(x, out, target, parity, dims,
                 shuffle_of, shuffle_seeds, num_windows, max_size, disp,
                 map_of, table, slope, t_grid, controls, inverted,
                 paint_of, paint_inside, corners, sizes, counts, constants, use_constant, noise_seed, noise_index,
                 bits, warp, original):
    """Write ``out[b]`` (and ``target[b]``) for every row ``b``: warp, flip, shuffle, map, paint, in that order.

    Args:
        x: ``(B, C, V)`` read-only view of the contiguous batch; spatial layout ``dims = (X, Y, Z)``
            (int64), Z contiguous (2D images as ``(1, H, W)``).
        out: ``(B, C, V)`` the transformed batch (written). No memory shared with ``x`` or ``target``.
        target: ``(B, C, V)`` the flipped batch (written), or ``(0, C, V)``: no target and no flip, the
            stages then read ``x`` directly.
        parity: ``(B, 3)`` uint8, flip row ``b`` along the axes where set (ignored without target).
        shuffle_of: ``(B,)`` int64 index into ``shuffle_seeds`` or -1 (row not shuffled).
        shuffle_seeds: ``(S,)`` int64 per shuffled row, seeding its window and permutation stream.
        num_windows: shuffle windows per row; ``max_size`` ``(3,)`` int64 the largest window per axis.
        disp: ``(V,)`` int16 or int32 scratch, all zero on entry and on return; it must hold the largest
            flat distance between two voxels of one window.
        map_of: ``(B,)`` int64 index into the maps or -1 (row not mapped).
        table, slope, t_grid: ``(M, L + 1)`` float64 maps (``nonlinear.BezierMaps``; NaN slopes mark
            the cells evaluated exactly); ``controls`` ``(M, 4)`` float64, ``inverted`` ``(M,)`` bool.
        paint_of: ``(B,)`` int64 index into the paintings or -1. Painting ``j`` fills the union of its
            first ``counts[j]`` boxes ``corners[j]``, ``sizes[j]`` (``(P, W, 3)`` int32) when
            ``paint_inside[j]`` (in-painting), else everything outside it (out-painting).
        constants, use_constant: ``(P,)`` the fill value of painting ``j`` when ``use_constant[j]``, else
            uniform noise: voxel ``p`` of channel ``ch`` gets the top ``bits`` bits (24 for float32, 53
            for float64) of ``mix(stream(noise_seed[j], noise_index[j] * C + ch) + (p + 1) * gamma)``.
        warp: ``(partial, first, even, dims, axis)``, the elastic warp of every row before the other stages:
            :func:`warp_sample`'s ``partial`` per row ``(B, 2, R, P)``, ``first``, ``even`` and ``dims``, and
            the axis of ``dims`` (the kernel layout) that is the warp's first axis (0 for a 3D sample, 1 for
            a 2D image, whose warp layout is ``(H, W, 1)``); a ``partial`` of 0 rows: no warp.
        original: ``(B, C, V)`` written with ``x`` itself (the target of a warped batch), or ``(0, C, V)``.

    A warped row is resampled into a scratch sample that stays in cache for the stages that follow; on
    an out-painted row without a target only the planes and lines of the kept boxes are resampled (the
    fill replaces the rest).

    Per row: the flip writes ``target`` in one pass. The shuffle draws its windows and, from the last
    window to the first, gives every voxel that no later window covered a source inside its window
    (:func:`_shuffle_sources`); it records only the source's offset (``disp``), so the values are moved
    in the final pass, which reads the flipped row in memory order and writes ``out`` once: value at
    ``p + disp[p]``, mapped, or the painting's fill. On out-painted rows the shuffle and the map skip
    the voxels the fill replaces (the out-painting keeps about 35% of a cube).
    """
    batch, channels, voxels = x.shape
    size_x, size_y, size_z = dims[0], dims[1], dims[2]
    lines = size_x * size_y
    plane_size = size_y * size_z
    has_target = target.shape[0] > 0
    shift = np.uint64(64 - bits)
    scale = 1.0 / float(np.uint64(1) << np.uint64(bits))
    # steep map cells: t to 2**-32 for float32 rows (the map then errs by < 1e-9, below float32's
    # resolution of the result; about half the solver's steps near a vertical tangent), else to 4e-16
    tolerance = 2.0**-32 if bits <= 24 else 4e-16
    lut_scale = float(table.shape[1] - 1)
    map_cell = np.empty(MAP_CHUNK, np.int32)
    map_fraction = np.empty(MAP_CHUNK, np.float64)
    map_values = np.empty(MAP_CHUNK, np.float64)
    tables = _window_tables(dims, max_size)
    lag = max_size[0] - 1  # a shuffled voxel takes its value from at most this many planes away
    # windows cover each voxel `overdraw` times on average: track coverage with line bitmaps when high
    mean_volume = (max_size[0] + 1) * (max_size[1] + 1) * (max_size[2] + 1) / 8.0
    by_lines = shuffle_seeds.shape[0] > 0 and num_windows * mean_volume > 4 * voxels and max_size[2] <= 64
    stamp = np.zeros(voxels if shuffle_seeds.shape[0] > 0 and not by_lines else 0, np.uint8)
    cov = np.zeros(lines * ((size_z + 63) >> 6) if by_lines else 0, np.uint64)
    keep = np.zeros(voxels if paint_of.shape[0] > 0 else 0, np.uint8)
    span_low = np.zeros(lines, np.int64)
    span_high = np.full(lines, size_z, np.int64)
    warp_partial, warp_first, warp_even, warp_dims, warp_axis = warp
    warping = warp_partial.shape[0] > 0
    scratch = np.empty((channels if warping else 0, voxels), x.dtype)
    work = warp_workspace(warp_partial, warp_dims)
    mark = 0
    for b in range(batch):
        painting = paint_of[b]
        outpainted = painting >= 0 and not paint_inside[painting]
        if outpainted:
            _keep_spans(painting, corners, sizes, counts, dims, keep, span_low, span_high)
        source = x[b]
        if warping:
            box = np.array((0, warp_dims[0], 0, warp_dims[1]), np.int64)
            if outpainted and not has_target:
                _bounding_box(painting, corners, sizes, counts, warp_axis, box)
            warp_sample(x[b], scratch, warp_partial[b], warp_first, warp_even, warp_dims, box[0], box[1],
                        box[2] * warp_dims[2], box[3] * warp_dims[2], work)
            source = scratch
        if original.shape[0] > 0:  # the row as given, copied while the warp has it in cache
            for ch in range(channels):
                line_x, line_original = x[b, ch], original[b, ch]
                for p in range(voxels):
                    line_original[_u(p)] = line_x[_u(p)]
        shuffled = shuffle_of[b] >= 0 and num_windows > 0
        if shuffled:
            if mark == 255:
                stamp[:] = 0
                mark = 0
            mark += 1
            _shuffle_sources(stamp, np.uint8(mark), cov, disp, shuffle_seeds[shuffle_of[b]], num_windows, dims,
                             tables, painting if outpainted else -1, corners, sizes, counts)
        mapped = map_of[b] >= 0
        m = map_of[b] if mapped else 0
        mp = (table[m], slope[m], lut_scale, t_grid[m], controls[m], inverted[m], tolerance, map_cell, map_fraction,
              map_values)
        flip_x, flip_y, flip_z = parity[b, 0] != 0, parity[b, 1] != 0, parity[b, 2] != 0
        for ch in range(channels):
            line_x = source[ch]
            line_out = out[b, ch]
            line_target = target[b, ch] if has_target else line_out  # (unused without a target)
            stream = np.uint64(0)
            fill = 0.0
            constant = False
            if painting >= 0:
                stream = _stream(noise_seed[painting], noise_index[painting] * channels + ch)
                fill = constants[painting]
                constant = use_constant[painting]
            # A row that is only copied or mapped (no flip, shuffle or out-painting) is one contiguous
            # pass: per 3D line (32 voxels) the loop's set-up would cost as much as the copy.
            whole = not (shuffled or outpainted or flip_x or flip_y or flip_z)
            if whole and has_target:
                _direct_values(line_x, line_target, line_out, 0, 1, 0, 0, voxels, voxels, True, mapped, mp)
            elif whole:
                _direct_values(line_x, line_target, line_out, 0, 1, 0, 0, voxels, voxels, False, mapped, mp)
            # Else plane by plane. A shuffled row reads the flipped row at p + disp[p], up to `lag` planes
            # ahead, so its target planes are written `lag` planes before they are read (still in cache).
            run_start, run_end = 0, 0  # fill of consecutive out-painted lines that keep nothing
            for step in range(0 if whole else size_x + (lag if shuffled else 0)):
                if shuffled and has_target and step < size_x:
                    _flip_plane(line_x, line_target, step, flip_x, flip_y, flip_z, size_x, size_y, size_z)
                plane = step - lag if shuffled else step
                if plane < 0:
                    continue
                if shuffled and not outpainted:  # the plane's lines are one contiguous span
                    line_in = line_target if has_target else line_x
                    _shuffled_values(line_in, line_out, plane * plane_size, (plane + 1) * plane_size, disp, mapped, mp)
                    continue
                for j in range(size_y):
                    line = plane * size_y + j
                    start = line * size_z
                    low = start + span_low[line]
                    high = start + span_high[line]
                    if outpainted and low == high:  # keeps nothing: its fill joins a run of such lines
                        if has_target and not shuffled:
                            read, direction = _line_read(plane, j, flip_x, flip_y, flip_z, size_x, size_y, size_z)
                            _direct_values(line_x, line_target, line_out, read, direction, start, low, high,
                                           size_z, True, False, mp)
                        if run_end != start:
                            _fill_range(line_out, run_start, run_end, fill, constant, stream, shift, scale)
                            run_start = start
                        run_end = start + size_z
                        continue
                    if shuffled:
                        _shuffled_values(line_target if has_target else line_x, line_out, low, high, disp, mapped, mp)
                    else:
                        # read the (flipped) line of x once, write the target line and the kept span
                        read, direction = _line_read(plane, j, flip_x, flip_y, flip_z, size_x, size_y, size_z)
                        if has_target:
                            _direct_values(line_x, line_target, line_out, read, direction, start, low, high,
                                           size_z, True, mapped, mp)
                        else:
                            _direct_values(line_x, line_target, line_out, read, direction, start, low, high,
                                           size_z, False, mapped, mp)
                    if outpainted:
                        _outpaint_line(line_out, start, low, high, start + size_z, keep, fill, constant, stream,
                                       shift, scale)
            _fill_range(line_out, run_start, run_end, fill, constant, stream, shift, scale)
            if painting >= 0 and paint_inside[painting]:
                _fill_boxes(line_out, painting, corners, sizes, counts, dims, fill, constant, stream, shift, scale)
        if outpainted:
            span_low[:] = 0
            span_high[:] = size_z
        if shuffled:
            disp[:] = 0


@njit(inline="always", cache=True)
def _line_read(plane, j, flip_x, flip_y, flip_z, size_x, size_y, size_z):
    """``(read, direction)``: where line ``(plane, j)`` of the flipped sample starts in the unflipped one
    and the step along it (-1 when Z is flipped)."""
    si = size_x - 1 - plane if flip_x else plane
    sj = size_y - 1 - j if flip_y else j
    read = (si * size_y + sj) * size_z
    return (read + size_z - 1, -1) if flip_z else (read, 1)


@njit(inline="always", cache=True)
def _shuffled_values(line_in, line_out, low, high, disp, mapped, mp):
    """``line_out[p]`` = the (mapped, ``mp`` as :func:`_map_range` takes it) value of ``line_in`` at
    ``p + disp[p]`` for ``p`` in ``[low, high)``: the copy, then the map over the span."""
    for p in range(low, high):
        line_out[_u(p)] = line_in[_u(p + disp[_u(p)])]
    if mapped:
        _map_range(line_out, low, high, mp)


@njit(inline="always", cache=True)
def _direct_values(line_x, line_target, line_out, read, direction, start, low, high, size_z, with_target, mapped, mp):
    """One line of a row that is not shuffled: ``line_target[start + k] = line_x[read + direction * k]``
    (the flip) for the whole line, and ``line_out`` = that value (mapped, ``mp`` as :func:`_map_range`
    takes it) on ``[low, high)``: the copy, then the map over the span. ``with_target`` is a constant at each
    call site (the copy loops are compiled with and without the target write)."""
    if with_target:
        for p in range(start, low):
            line_target[_u(p)] = line_x[_u(read + direction * (p - start))]
        for p in range(high, start + size_z):
            line_target[_u(p)] = line_x[_u(read + direction * (p - start))]
    if direction == 1:  # a contiguous copy, which vectorises (a short 3D line is 32 voxels)
        offset = read - start
        for p in range(low, high):
            v = line_x[_u(p + offset)]
            if with_target:
                line_target[_u(p)] = v
            line_out[_u(p)] = v
    else:
        for p in range(low, high):
            v = line_x[_u(read + direction * (p - start))]
            if with_target:
                line_target[_u(p)] = v
            line_out[_u(p)] = v
    if mapped:
        _map_range(line_out, low, high, mp)


MAP_CHUNK = 256
"""Values that :func:`_map_range` maps at a time."""

MAP_SHORT = 64
"""Spans shorter than this are mapped one value at a time (the passes' set-up would cost more)."""


@njit(inline="always", cache=True)
def _map_range(line, low, high, mp):
    """``line[p]`` = :func:`_map_value` of itself for ``p`` in ``[low, high)``: a short span one value at a
    time, a longer one :data:`MAP_CHUNK` values at a time in three passes: the table cell and fraction
    of every value (:func:`_table_cell`, vectorised), the interpolation (reads of the table), then, only
    if a value was NaN or fell in a cell evaluated exactly, the exact evaluation of those values.
    ``mp = (table, slope, scale, t_grid, controls, inverted, tolerance, cell, fraction, values)``, the
    last three scratch arrays of :data:`MAP_CHUNK`."""
    table, slope, scale, t_grid, controls, inverted, tolerance, cell, fraction, values = mp
    if high - low < MAP_SHORT:
        for p in range(low, high):
            line[_u(p)] = _map_value(line[_u(p)], table, slope, scale, t_grid, controls, inverted, tolerance)
        return
    for chunk in range(low, high, MAP_CHUNK):
        width = min(high, chunk + MAP_CHUNK) - chunk
        suspect = 0
        for k in range(width):
            value = np.float64(line[_u(chunk + k)])
            values[_u(k)] = value
            suspect += np.int32(value != value)
            _, base, offset = _table_cell(value, scale)
            cell[_u(k)] = np.int32(base)
            fraction[_u(k)] = offset
        for k in range(width):
            j = _u(cell[_u(k)])
            step = slope[j]
            suspect += np.int32(step != step)
            line[_u(chunk + k)] = table[j] + fraction[_u(k)] * step
        if suspect:  # a NaN result: a NaN value, or a value in a steep cell (evaluated exactly)
            for k in range(width):
                mapped, value = line[_u(chunk + k)], values[_u(k)]
                if mapped != mapped or value != value:
                    line[_u(chunk + k)] = _map_value(value, table, slope, scale, t_grid, controls, inverted,
                                                     tolerance)


@njit(inline="always", cache=True)
def _outpaint_line(line_out, start, low, high, end, keep, fill, constant, stream, shift, scale):
    """Out-painting of one line whose kept boxes lie within ``[low, high)``: the fill outside the span
    and on the voxels of the span between two boxes (``keep[p] == 0``)."""
    _fill_range(line_out, start, low, fill, constant, stream, shift, scale)
    if constant:
        for p in range(low, high):
            line_out[_u(p)] = line_out[_u(p)] if keep[_u(p)] else fill
    else:
        for p in range(low, high):
            noise = _counter_uniform(stream, p, shift, scale)
            line_out[_u(p)] = line_out[_u(p)] if keep[_u(p)] else noise
    _fill_range(line_out, high, end, fill, constant, stream, shift, scale)


@njit(inline="always", cache=True)
def _fill_range(line_out, start, end, fill, constant, stream, shift, scale):
    """The painting's fill on ``[start, end)``: the constant, or voxel ``p``'s value of the noise stream."""
    if constant:
        for p in range(start, end):
            line_out[_u(p)] = fill
    else:
        for p in range(start, end):
            line_out[_u(p)] = _counter_uniform(stream, p, shift, scale)


@njit(cache=True, nogil=True)
def _flip_plane(line_x, line_target, i, flip_x, flip_y, flip_z, size_x, size_y, size_z):
    """Plane ``i`` (first axis) of ``line_target`` = the sample ``line_x`` flipped along the requested axes."""
    si = size_x - 1 - i if flip_x else i
    for j in range(size_y):
        sj = size_y - 1 - j if flip_y else j
        read = (si * size_y + sj) * size_z
        write = (i * size_y + j) * size_z
        if flip_z:
            for k in range(size_z):
                line_target[_u(write + k)] = line_x[_u(read + size_z - 1 - k)]
        else:
            for k in range(size_z):
                line_target[_u(write + k)] = line_x[_u(read + k)]


@njit(cache=True, nogil=True)
def _keep_spans(j, corners, sizes, counts, dims, keep, span_low, span_high):
    """Mark the union of painting ``j``'s boxes in ``keep`` (1 inside, 0 outside) and, per ``(x, y)``
    line, the z-span ``[span_low, span_high)`` that contains it (``Z, Z`` on lines it misses)."""
    size_y, size_z = dims[1], dims[2]
    keep[:] = 0
    _mark_boxes(keep, np.uint8(1), j, corners, sizes, counts, dims)
    span_low[:] = size_z
    span_high[:] = 0  # reset to (0, Z) by the caller after the row
    for w in range(counts[j]):
        low_z = corners[j, w, 2]
        high_z = low_z + sizes[j, w, 2]
        for a in range(sizes[j, w, 0]):
            for c in range(sizes[j, w, 1]):
                line = (corners[j, w, 0] + a) * size_y + corners[j, w, 1] + c
                span_low[line] = min(span_low[line], low_z)
                span_high[line] = max(span_high[line], high_z)
    for line in range(span_low.shape[0]):
        span_high[line] = max(span_high[line], span_low[line])


@njit(cache=True, nogil=True)
def _fill_boxes(line_out, j, corners, sizes, counts, dims, fill, constant, stream, shift, scale):
    """In-painting: the fill inside the first ``counts[j]`` boxes of painting ``j`` (one channel)."""
    stride0 = dims[1] * dims[2]
    stride1 = dims[2]
    for w in range(counts[j]):
        corner = corners[j, w, 0] * stride0 + corners[j, w, 1] * stride1 + corners[j, w, 2]
        for a in range(sizes[j, w, 0]):
            for b in range(sizes[j, w, 1]):
                start = corner + a * stride0 + b * stride1
                for p in range(start, start + sizes[j, w, 2]):
                    line_out[_u(p)] = fill if constant else _counter_uniform(stream, p, shift, scale)


@njit(cache=True)
def _window_tables(dims, max_size):
    """Shape table of the shuffle windows: ``(shape_x, shape_y, shape_z, offsets, starts)``.

    Shape ``k`` has sizes ``(shape_x[k], shape_y[k], shape_z[k])``, enumerated with x slowest, and the
    flat offsets ``offsets[starts[k]:starts[k + 1]]`` of its voxels from its corner in row-major order,
    so that a window is scanned by one flat loop (a branch misprediction per window rather than per
    window row).
    """
    stride0 = dims[1] * dims[2]
    stride1 = dims[2]
    num_shapes = max_size[0] * max_size[1] * max_size[2]
    shape_x = np.empty(num_shapes, np.int64)
    shape_y = np.empty(num_shapes, np.int64)
    shape_z = np.empty(num_shapes, np.int64)
    starts = np.empty(num_shapes + 1, np.int64)
    total = (max_size[0] * (max_size[0] + 1) // 2) * (max_size[1] * (max_size[1] + 1) // 2) * (
        max_size[2] * (max_size[2] + 1) // 2)
    offsets = np.empty(total, np.int32)
    k = 0
    q = 0
    for sx in range(1, max_size[0] + 1):
        for sy in range(1, max_size[1] + 1):
            for sz in range(1, max_size[2] + 1):
                shape_x[k] = sx
                shape_y[k] = sy
                shape_z[k] = sz
                starts[k] = q
                for a in range(sx):
                    for b in range(sy):
                        for c in range(sz):
                            offsets[q] = a * stride0 + b * stride1 + c
                            q += 1
                k += 1
    starts[num_shapes] = q
    return shape_x, shape_y, shape_z, offsets, starts


@njit(cache=True, nogil=True)
def _shuffle_sources(stamp, mark, cov, disp, seed, num_windows, dims, tables, keep_j, corners, sizes, counts):
    """Local pixel shuffling of one row as source offsets: ``disp[d] = s - d`` for every voxel ``d`` that
    takes the value of voxel ``s`` (left 0 elsewhere).

    The windows are drawn in write order from the row's stream (``seed``): size ``U{1 .. max_size}`` and
    corner ``U{0 .. dim - size}`` per axis, as the reference. They are then visited from the last to the
    first and only voxels that no later window covered are assigned: voxel ``d`` takes ``s = perm_w(d)``
    for its last window ``w``. The sources of the ``k`` voxels a window keeps (in the window's row-major
    order) are the first ``k`` steps of a Fisher-Yates shuffle of the window's ``n`` voxels: a uniform
    injection, which is exactly the law of a uniform permutation of the window restricted to those
    voxels, and windows stay independent. With ``keep_j >= 0`` only the union of painting ``keep_j``'s
    boxes is assigned (the rest counts as covered), and windows that miss every box are skipped: same
    output, fewer voxel visits.

    Covered voxels are tracked in one of two ways with the same result: a byte per voxel (``stamp``,
    equal to ``mark`` once covered; fastest when windows cover each voxel about twice, as at 64x64x32),
    or, when ``cov`` is not empty, a bit per voxel in 64-bit words per line (:func:`_kept_by_lines`),
    which skips a window whose every line is already covered with one word test per line: many times
    faster when windows cover each voxel dozens of times (10,000 windows on a 224x224 image).
    """
    shape_x, shape_y, shape_z, offsets, starts = tables
    num_shapes = shape_x.shape[0]
    largest = shape_x[num_shapes - 1] * shape_y[num_shapes - 1] * shape_z[num_shapes - 1]
    by_lines = cov.shape[0] > 0
    num_boxes = 0
    box_low = np.empty((corners.shape[1], 3), np.int64)
    box_high = np.empty((corners.shape[1], 3), np.int64)
    if keep_j >= 0:
        num_boxes = counts[keep_j]
        for b in range(num_boxes):
            for axis in range(3):
                box_low[b, axis] = corners[keep_j, b, axis]
                box_high[b, axis] = corners[keep_j, b, axis] + sizes[keep_j, b, axis]
    # voxels outside the kept boxes behave as if a later window had covered them
    if by_lines:
        _cover_outside(cov, dims, box_low, box_high, num_boxes if keep_j >= 0 else -1)
    elif keep_j >= 0:
        stamp[:] = mark
        _mark_boxes(stamp, np.uint8(0), keep_j, corners, sizes, counts, dims)
    # the windows, in write order (the stream's first 4 * num_windows chunks, rejections aside)
    words = np.empty(max(STREAM_WORDS, largest // 4 + 2), np.uint64)  # room for a window's draws
    chunks = words.view(np.uint16)
    position = chunks.shape[0]
    state = _stream(seed, 0)
    first = np.empty(num_windows, np.int64)  # flat index of the corner
    shape_of = np.empty(num_windows, np.int64)
    corner_xyz = np.empty((num_windows if num_boxes > 0 or by_lines else 0, 3), np.int64)
    stride0 = dims[1] * dims[2]
    for w in range(num_windows):
        position, state, k = _draw16(words, chunks, position, state, num_shapes)
        position, state, cx = _draw16(words, chunks, position, state, dims[0] - shape_x[k] + 1)
        position, state, cy = _draw16(words, chunks, position, state, dims[1] - shape_y[k] + 1)
        position, state, cz = _draw16(words, chunks, position, state, dims[2] - shape_z[k] + 1)
        shape_of[_u(w)] = k
        first[_u(w)] = cx * stride0 + cy * dims[2] + cz
        if corner_xyz.shape[0] > 0:
            corner_xyz[_u(w), 0] = cx
            corner_xyz[_u(w), 1] = cy
            corner_xyz[_u(w), 2] = cz
    source = np.empty(largest, np.int64)  # Fisher-Yates: voxels of the window not yet drawn from
    target = np.empty(largest, np.int64)  # the voxels the window keeps, in its row-major order
    fresh = np.empty(2 * shape_x[num_shapes - 1] * shape_y[num_shapes - 1], np.uint64)
    for w in range(num_windows - 1, -1, -1):
        k = _u(shape_of[_u(w)])
        if num_boxes > 0 and not _overlaps_any(corner_xyz[_u(w)], shape_x[k], shape_y[k], shape_z[k], box_low,
                                               box_high, num_boxes):
            continue
        window = starts[k]
        n = starts[k + _u(1)] - window
        base = first[_u(w)]
        if by_lines:
            kept = _kept_by_lines(cov, dims, corner_xyz[_u(w)], shape_x[k], shape_y[k], shape_z[k], fresh, target)
        else:
            kept = 0
            for q in range(n):
                p = base + offsets[_u(window + q)]
                source[_u(q)] = p
                target[_u(kept)] = p
                kept += stamp[_u(p)] != mark
                stamp[_u(p)] = mark
        if n == 1 or kept == 0:
            continue  # a one-voxel window keeps its value (and hides earlier windows)
        if by_lines:
            for q in range(n):
                source[_u(q)] = base + offsets[_u(window + q)]
        # the first `kept` steps of a Fisher-Yates shuffle; each takes one chunk unless rejected (rare)
        position, state = _reserve16(words, chunks, position, state, kept)
        for t in range(kept):
            size = np.uint64(n - t)
            m = np.uint64(chunks[_u(position)]) * size
            position += 1
            if (m & np.uint64(0xFFFF)) < size:
                position, state, m = _redraw16(words, chunks, position, state, size, m, kept - t - 1)
            r = _u(t) + (m >> np.uint64(16))
            s = source[r]
            source[r] = source[_u(t)]  # position t is final: only its value s is needed
            d = target[_u(t)]
            disp[_u(d)] = s - d


@njit(inline="always", cache=True)
def _kept_by_lines(cov, dims, low, size_x, size_y, size_z, fresh, target):
    """Mark a window covered in the line bitmaps ``cov`` and write the voxels it covered first to
    ``target`` (row-major window order); returns their number. A window's run ``[z, z + size_z)`` of a
    line lies in at most two 64-bit words (``size_z <= 64``)."""
    size_line, words = dims[2], (dims[2] + 63) >> 6
    one = np.uint64(1)
    full = ~np.uint64(0)
    word0 = low[2] >> 6
    shift0 = low[2] & 63
    run = full >> np.uint64(64 - size_z)
    mask0 = run << np.uint64(shift0)
    mask1 = (run >> np.uint64(64 - shift0)) if shift0 > 0 else np.uint64(0)
    second = mask1 != 0 and word0 + 1 < words
    anything = np.uint64(0)
    f = 0
    for a in range(size_x):
        line = ((low[0] + a) * dims[1] + low[1]) * words + word0
        for b in range(size_y):
            old = cov[_u(line)]
            new0 = mask0 & ~old
            cov[_u(line)] = old | mask0
            new1 = np.uint64(0)
            if second:
                old = cov[_u(line + 1)]
                new1 = mask1 & ~old
                cov[_u(line + 1)] = old | mask1
            fresh[_u(f)] = new0
            fresh[_u(f + 1)] = new1
            anything |= new0 | new1
            f += 2
            line += words
    kept = 0
    if anything == 0:
        return kept
    f = 0
    for a in range(size_x):
        start = ((low[0] + a) * dims[1] + low[1]) * size_line + low[2]
        for b in range(size_y):
            new0 = fresh[_u(f)]
            new1 = fresh[_u(f + 1)]
            f += 2
            if new0 == mask0 and new1 == mask1:  # the whole run is new
                for z in range(size_z):
                    target[_u(kept + z)] = start + z
                kept += size_z
            elif new0 != 0 or new1 != 0:
                bits = (new0 >> np.uint64(shift0)) | ((new1 << np.uint64(64 - shift0)) if shift0 > 0 else np.uint64(0))
                for z in range(size_z):
                    target[_u(kept)] = start + z
                    kept += np.int64((bits >> np.uint64(z)) & one)
            start += size_line
    return kept


@njit(cache=True, nogil=True)
def _cover_outside(cov, dims, box_low, box_high, num_boxes):
    """Reset the line bitmaps: nothing covered (``num_boxes < 0``), or everything but the boxes."""
    if num_boxes < 0:
        cov[:] = 0
        return
    words = (dims[2] + 63) >> 6
    cov[:] = ~np.uint64(0)
    for b in range(num_boxes):
        for x in range(box_low[b, 0], box_high[b, 0]):
            for y in range(box_low[b, 1], box_high[b, 1]):
                line = (x * dims[1] + y) * words
                for z in range(box_low[b, 2], box_high[b, 2]):
                    cov[_u(line + (z >> 6))] &= ~(np.uint64(1) << np.uint64(z & 63))


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
def _bounding_box(j, corners, sizes, counts, axis, box):
    """``box = (low_0, high_0, low_1, high_1)``: the extent of painting ``j``'s boxes along ``axis`` and
    ``axis + 1``."""
    box[0], box[1], box[2], box[3] = 2**62, 0, 2**62, 0
    for w in range(counts[j]):
        box[0] = min(box[0], corners[j, w, axis])
        box[1] = max(box[1], corners[j, w, axis] + sizes[j, w, axis])
        box[2] = min(box[2], corners[j, w, axis + 1])
        box[3] = max(box[3], corners[j, w, axis + 1] + sizes[j, w, axis + 1])


@njit(cache=True, nogil=True)
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
                    stamp[_u(start + c)] = value


# --------------------------------------------------------------------------------------------------
# Non-linear intensity maps (nonlinear.BezierMaps): exact tables, linear interpolation, exact cells.
# No fastmath here: the table builder must round exactly like the torch builder.
# --------------------------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def _bezier_xy(t, a, b):
    """``3 t^2 (1-t) a + 3 t (1-t)^2 b + (1-t)^3`` (the same operations as ``nonlinear.bezier_xy``)."""
    u = 1.0 - t
    return 3.0 * t * t * u * a + 3.0 * t * u * u * b + u * u * u


@njit(inline="always", cache=True)
def _secant_start(value, a1, a2, low, high):
    """The secant point of ``X(t) = value`` on ``[low, high]`` (``nonlinear._secant_start``)."""
    f_low = _bezier_xy(low, a1, a2) - value
    span = f_low - (_bezier_xy(high, a1, a2) - value)
    t = low + (high - low) * (f_low / span) if span > 0 else 0.5 * (low + high)
    return min(max(t, low), high)


@njit(inline="always", cache=True)
def _solve_t(value, a1, a2, low, high, tolerance):
    """The t in ``[low, high]`` with ``X(t) = value``: the steps of ``nonlinear.solve_t``, one value, to
    ``tolerance`` (``nonlinear.solve_t`` uses 4e-16)."""
    t = _secant_start(value, a1, a2, low, high)
    for _ in range(100):
        u = 1.0 - t
        f = _bezier_xy(t, a1, a2) - value
        if f > 0:
            low = t
        else:
            high = t
        d = 3.0 * ((a1 - a2) * 2.0 * t * u - a1 * t * t + (a2 - 1.0) * u * u)
        newton = t - f / (d if d < 0 else -1.0)
        step = newton if (d < 0 and newton > low and newton < high) else 0.5 * (low + high)
        if f == 0 or abs(step - t) <= tolerance or high - low <= tolerance:
            break
        t = step
    return t


@njit(cache=True, nogil=True)
def bezier_tables(controls, inverted, samples, tolerance, table, slope, t_grid):
    """Fill the tables of ``nonlinear.BezierMaps`` (``build_maps``): ``table``, ``slope``, ``t_grid`` are
    ``(n, L + 1)`` float64; ``controls`` ``(n, 4)`` float64 ``a1, b1, a2, b2``; ``inverted`` ``(n,)``.

    Per map: ``samples`` values of t (1 down to 0) bracket every grid value ``j / L`` (a merge walk);
    the secant point of the bracket and one Newton step solve ``X(t) = j / L`` to machine precision
    wherever ``X'`` is not small. Cells where the interpolated table misses a curve sample by more than
    ``tolerance`` get a NaN slope (evaluated exactly by :func:`_map_value`), and their edges are solved
    fully, since they bracket those evaluations. The same steps as ``nonlinear.build_maps``.
    """
    size = table.shape[1] - 1
    xs = np.empty(samples)
    ys = np.empty(samples)
    ts = np.empty(samples)
    reach = np.empty(samples)
    worst = np.empty(size)
    low_t = np.empty(size + 1)
    high_t = np.empty(size + 1)
    for i in range(controls.shape[0]):
        a1, b1, a2, b2 = controls[i, 0], controls[i, 1], controls[i, 2], controls[i, 3]
        inv = inverted[i]
        for q in range(samples):
            t = 1.0 - q / (samples - 1)
            ts[q] = t
            xs[q] = _bezier_xy(t, a1, a2)
            ys[q] = _bezier_xy(1.0 - t if inv else t, b1, b2)
            reach[q] = xs[q] if q == 0 else max(reach[q - 1], xs[q])  # ascending despite rounding
        right = 0
        for j in range(size + 1):
            value = j / size
            while right < samples and reach[right] < value:
                right += 1
            r = min(max(right, 1), samples - 1)
            low_t[j], high_t[j] = ts[r], ts[r - 1]
            if j == 0:
                t = 1.0
            elif j == size:
                t = 0.0
            else:  # the secant point and one Newton step, as the torch builder
                t = _secant_start(value, a1, a2, low_t[j], high_t[j])
                u = 1.0 - t
                d = 3.0 * ((a1 - a2) * 2.0 * t * u - a1 * t * t + (a2 - 1.0) * u * u)
                newton = t - (_bezier_xy(t, a1, a2) - value) / (d if d < 0 else -1.0)
                t = newton if (d < 0 and newton > low_t[j] and newton < high_t[j]) else t
            t_grid[i, j] = t
            table[i, j] = _bezier_xy(1.0 - t if inv else t, b1, b2)
        for j in range(size):
            slope[i, j] = table[i, j + 1] - table[i, j]
        slope[i, size] = 0.0
        worst[:] = 0.0
        for q in range(samples):
            cell = min(max(np.int64(np.floor(xs[q] * size)), 0), size - 1)
            frac = xs[q] * size - cell
            worst[cell] = max(worst[cell], abs(table[i, cell] + frac * slope[i, cell] - ys[q]))
        # the edges of the cells evaluated exactly are solved fully (they bracket the per-voxel solves)
        for j in range(1, size):
            if worst[j - 1] > tolerance or worst[j] > tolerance:
                t = _solve_t(j / size, a1, a2, low_t[j], high_t[j], 4e-16)
                t_grid[i, j] = t
                table[i, j] = _bezier_xy(1.0 - t if inv else t, b1, b2)
        for j in range(size):
            slope[i, j] = np.nan if worst[j] > tolerance else table[i, j + 1] - table[i, j]


@njit(cache=True, nogil=True)
def _exact_value(c, a1, b1, a2, b2, inverted, low, high, tolerance):
    """The exact map at ``c`` in [0, 1], its t bracketed by ``[low, high]`` and solved to ``tolerance`` (a
    separate function: rare)."""
    t = _solve_t(c, a1, a2, low, high, tolerance)
    return _bezier_xy(1.0 - t if inverted else t, b1, b2)


@njit(inline="always", cache=True)
def _table_cell(value, scale):
    """``(c, cell, fraction)`` of a float64 value in a map's table of ``scale`` cells: ``c`` the value
    clamped to [0, 1] (NaN takes 0, a valid index; the callers return NaN themselves), ``cell`` the
    float index of its cell and ``fraction`` its position inside."""
    c = value if value > 0.0 else 0.0
    c = c if c < 1.0 else 1.0
    position = c * scale
    base = np.floor(position)
    return c, base, position - base


@njit(inline="always", cache=True)
def _map_value(v, table, slope, scale, t_grid, controls, inverted, tolerance):
    """``v`` clamped to [0, 1] through one map: linear interpolation in its table, or the exact map in
    the cells marked by a NaN slope (t solved to ``tolerance``). NaN stays NaN. Arithmetic in float64."""
    value = np.float64(v)
    c, base, offset = _table_cell(value, scale)
    j = _u(np.int64(base))
    step = slope[j]
    if step != step:
        if value != value:
            return value
        return _exact_value(c, controls[0], controls[1], controls[2], controls[3], inverted, t_grid[j + _u(1)],
                            t_grid[j], tolerance)
    mapped = table[j] + offset * step
    return mapped if value == value else value


@njit(inline="always", cache=True)
def _counter_uniform(stream, p, shift, scale):
    """Value ``p`` of a counter-based stream: the top ``64 - shift`` bits of
    ``mix(stream + (p + 1) * gamma)`` times ``scale`` (a function of ``p`` alone, so loops over it
    vectorise and overlapping writes agree)."""
    return float(_mix(stream + _GAMMA * np.uint64(p + 1)) >> shift) * scale


@njit(inline="always", cache=True)
def _reflect_into(position, size, inverse, high):
    """One unnormalised coordinate as ``grid_sample(padding_mode="reflection", align_corners=False)`` uses it:
    ``position`` itself if it lies in ``[0, high]`` (``high = size - 1``), else reflected about the borders
    half a voxel outside the edge voxels (scipy's ``"reflect"``) and clipped to ``[0, high]``.

    Without a branch, so that a loop over positions vectorises; ``inverse = 1 / size``. Where the product
    with the inverse rounds across an integer, the reflection lands within half a voxel outside the plane
    and the clip gives the position that the division would give.
    """
    shifted = abs(position + 0.5)
    flips = np.floor(shifted * inverse)
    extra = shifted - flips * size
    odd = flips - 2.0 * np.floor(0.5 * flips)
    reflected = min(max(extra - 0.5 + odd * (size - 2.0 * extra), 0.0), high)
    return position if (position >= 0.0) & (position <= high) else reflected


@njit(inline="always", cache=True)
def _reflect_once(position, high, top, zero, one):
    """:func:`_reflect_into` for a position at most one reflection away (``-size - 0.5 <= position <=
    2 size - 0.5``; ``high = size - 1``, ``top = 2 size - 1``): ``-1 - p`` below the plane, ``top - p``
    above it, clipped to ``[0, high]``. Gives what the general formula gives there, without its division,
    vectorises, and keeps the type of its arguments (``zero``, ``one``: 0 and 1 in that type)."""
    reflected = position if position >= zero else -position - one
    reflected = reflected if reflected <= high else top - reflected
    return min(max(reflected, zero), high)


@njit(inline="always", cache=True)
def _neighbours(r, c, last_x, last_y, plane, size_z, lane):
    """``(first, weight_x, weight_y)`` of the in-plane position ``(r, c)`` (inside the plane) of a voxel in
    lane ``lane``: the int32 flat index of its first neighbour (a sample holds fewer than 2**31 voxels;
    ``plane``, ``size_z``, ``lane`` int32) and the bilinear weights of the next row and column, in the
    type of ``r`` and ``c``. A position on the last row (column) takes weight 1 of the row before it
    (``last_x``, ``last_y``: the index of the row and column before the last, in that type)."""
    r0 = min(np.floor(r), last_x)
    c0 = min(np.floor(c), last_y)
    return np.int32(r0) * plane + np.int32(c0) * size_z + lane, r - r0, c - c0


WARP_CHUNK = 512
"""Voxels of a first-axis plane that :func:`warp_sample` resamples at a time (the displacement, positions
and weights of a block of planes stay in the L1 cache)."""

WARP_BLOCK = 4
"""Planes whose displacement :func:`warp_sample` computes together (each term of the factored field is read
once for all of them)."""

WARP_LOOKAHEAD_BYTES = 2**17
"""How far ahead of the planes being resampled :func:`warp_sample` reads the sample in memory order
(one value per cache line), so that the hardware prefetcher streams it into the cache before the
scattered reads of the interpolation need it: 1.2x faster on a batch that is not in cache yet."""


@njit(inline="always", cache=True)
def _touch(src, start, stop):
    """Read one value per 64-byte line of ``src[:, start:stop]`` in memory order; returns their sum (kept
    by the caller, so that the reads are not optimised away)."""
    total = 0.0
    step = max(64 // src.itemsize, 1)
    for ch in range(src.shape[0]):
        line = src[ch]
        for p in range(max(start, 0), stop, step):
            total += line[_u(p)]
    return total


@njit(cache=True, nogil=True)
def warp_workspace(partial, dims):
    """Scratch arrays of :func:`warp_sample` for one shape and dtype (made once per batch)."""
    size_x, size_y, size_z = dims[0], dims[1], dims[2]
    plane = size_y * size_z
    chunk = min(plane, WARP_CHUNK)
    dtype = partial.dtype
    rows = np.empty(size_x, dtype)  # first index of plane i, in the batch's type
    col = np.empty(plane, dtype)  # second index of voxel q of a plane
    lane = np.empty(plane, np.int32)  # its third index
    for i in range(size_x):
        rows[i] = i
    for q in range(plane):
        col[q] = q // size_z
        lane[q] = q % size_z
    # the bounds of the position arithmetic, in the batch's type
    bounds = np.array((size_x - 1.0, size_y - 1.0, 2.0 * size_x - 1.0, 2.0 * size_y - 1.0,
                       -size_x - 0.5, 2.0 * size_x - 0.5, -size_y - 0.5, 2.0 * size_y - 0.5,
                       max(size_x - 2.0, 0.0), max(size_y - 2.0, 0.0), 0.0, 1.0, -1.0), dtype)
    return (np.empty((2, 2, WARP_BLOCK, chunk), dtype), np.zeros((WARP_BLOCK, partial.shape[2]), dtype),
            np.empty(chunk, np.int32), np.empty(chunk, dtype), np.empty(chunk, dtype),
            rows, col, lane, bounds, np.zeros(1, np.float64))


@njit(cache=True, nogil=True, fastmath={"contract"})
def warp_inplane(src, dst, partial, first, even, dims):
    """Bilinear resampling of every ``(x, y)`` plane at ``(x + dx, y + dy)``, scipy-``reflect`` borders.

    Args:
        src: ``(B, C, V)`` view of a contiguous ``(B, C, X, Y, Z)`` batch (2D images: ``Z = 1``), read only.
        dst: same shape, written; no shared memory with ``src``.
        partial, first, even: the displacement (voxels along X and Y; Z is not displaced) in factored
            form, in the batch's dtype: ``partial (B, 2, R, Y * Z)``, ``first (ceil(X / 2), R)``, the first
            ``even`` columns of the first axis's factor symmetric about the middle plane, the others
            antisymmetric (see :func:`warp_sample`).
        dims: ``(3,)`` int64 spatial shape ``(X, Y, Z)``.
    """
    work = warp_workspace(partial, dims)
    for b in range(src.shape[0]):
        warp_sample(src[b], dst[b], partial[b], first, even, dims, 0, dims[0], 0, dims[1] * dims[2], work)


@njit(inline="always", cache=True)
def _factor_terms(acc, weights, terms, r0, r1, q0, width):
    """``acc[k, q] = sum(weights[k, r] * terms[r, q0 + q] for r in range(r0, r1))`` for the
    :data:`WARP_BLOCK` (4) rows ``k`` and ``q < width`` (``r1 > r0``). Each term row is read once for the
    four rows, four terms per pass (a vectorised loop bound by its loads); the terms of a row are added
    in order, one at a time."""
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
    row = terms[r0]
    x0, x1, x2, x3 = w0[r0], w1[r0], w2[r0], w3[r0]
    for q in range(width):
        t = row[_u(q0 + q)]
        a0[_u(q)] = x0 * t
        a1[_u(q)] = x1 * t
        a2[_u(q)] = x2 * t
        a3[_u(q)] = x3 * t
    blocked = r0 + 1 + ((r1 - r0 - 1) // 4) * 4
    for r in range(r0 + 1, blocked, 4):
        t0, t1, t2, t3 = terms[r], terms[r + 1], terms[r + 2], terms[r + 3]
        x00, x01, x02, x03 = w0[r], w0[r + 1], w0[r + 2], w0[r + 3]
        x10, x11, x12, x13 = w1[r], w1[r + 1], w1[r + 2], w1[r + 3]
        x20, x21, x22, x23 = w2[r], w2[r + 1], w2[r + 2], w2[r + 3]
        x30, x31, x32, x33 = w3[r], w3[r + 1], w3[r + 2], w3[r + 3]
        for q in range(width):
            p = _u(q0 + q)
            v0, v1, v2, v3 = t0[p], t1[p], t2[p], t3[p]
            a0[_u(q)] = (((a0[_u(q)] + x00 * v0) + x01 * v1) + x02 * v2) + x03 * v3
            a1[_u(q)] = (((a1[_u(q)] + x10 * v0) + x11 * v1) + x12 * v2) + x13 * v3
            a2[_u(q)] = (((a2[_u(q)] + x20 * v0) + x21 * v1) + x22 * v2) + x23 * v3
            a3[_u(q)] = (((a3[_u(q)] + x30 * v0) + x31 * v1) + x32 * v2) + x33 * v3
    for r in range(blocked, r1):
        row = terms[r]
        x0, x1, x2, x3 = w0[r], w1[r], w2[r], w3[r]
        for q in range(width):
            t = row[_u(q0 + q)]
            a0[_u(q)] += x0 * t
            a1[_u(q)] += x1 * t
            a2[_u(q)] += x2 * t
            a3[_u(q)] += x3 * t


@njit(cache=True, nogil=True, fastmath={"contract"})
def warp_sample(src, dst, partial, first, even, dims, low_x, high_x, low_q, high_q, work):
    """:func:`warp_inplane` for one sample, on the first-axis planes ``[low_x, high_x)`` and the voxels
    ``[low_q, high_q)`` of each plane (flat ``y * Z + z``; the rest of ``dst`` is not written).

    Args:
        src, dst: ``(C, V)`` the sample and its output (no shared memory).
        partial: ``(2, R, Y * Z)``; ``first`` ``(ceil(X / 2), R)``; ``even``; ``dims`` ``(X, Y, Z)``; ``work``
            from :func:`warp_workspace`.

    The displacement along ``axis`` of plane ``i`` is ``F[i] @ partial[axis]``, where the first-axis factor
    ``F`` (``X`` rows) has ``even`` columns symmetric about the middle plane (``F[X - 1 - i, r] = F[i, r]``)
    and antisymmetric ones after them (``F[X - 1 - i, r] = -F[i, r]``); ``first`` holds its rows ``c <=
    (X - 1) / 2``. The planes ``c`` and ``X - 1 - c`` share their two partial sums ``e`` (symmetric
    columns) and ``o`` (antisymmetric ones): their displacements are ``e + o`` and ``e - o``, so each
    plane costs half the multiply-adds, and a plane's displacement does not depend on the range.

    The same arithmetic as ``elastic.warp`` (``grid_sample`` bilinear, reflection padding,
    ``align_corners=False``) without building the normalised grid, in three passes per block of
    :data:`WARP_BLOCK` plane pairs and :data:`WARP_CHUNK` voxels:

    1. the partial sums ``e`` and ``o`` (:func:`_factor_terms`);
    2. per plane, the positions ``i + d`` in the batch's dtype (as ``grid_sample`` computes its float32
       coordinates), reflected without a branch (scipy's ``"reflect"``) by the one-reflection formula
       ``-1 - p`` below the plane and ``2 size - 1 - p`` above it, which gives what the general
       :func:`_reflect_into` gives there; a chunk that holds a position further away takes the general
       formula. Each position gives its weights and first source voxel (an int32 flat index);
    3. the interpolation of every channel from the four neighbours.

    The sample is also read in memory order :data:`WARP_LOOKAHEAD_BYTES` ahead of both ends of the
    planes being resampled (:func:`_touch`).
    """
    sums, weights, index, weight_x, weight_y, rows_of, col, lane, bounds, sink = work
    edge_x, edge_y, top_x, top_y = bounds[0], bounds[1], bounds[2], bounds[3]
    low_x_far, high_x_far, low_y_far, high_y_far = bounds[4], bounds[5], bounds[6], bounds[7]
    last_x, last_y, zero, one, minus_one = bounds[8], bounds[9], bounds[10], bounds[11], bounds[12]
    size_x, size_y, size_z = dims[0], dims[1], dims[2]
    plane = size_y * size_z
    plane_i, size_z_i = np.int32(plane), np.int32(size_z)
    float_x, float_y = np.float64(size_x), np.float64(size_y)
    inverse_x, inverse_y = 1.0 / float_x, 1.0 / float_y
    rank = first.shape[1]
    chunk = sums.shape[3]
    step_x = plane if size_x > 1 else 0
    step_y = size_z if size_y > 1 else 0
    # the canonical planes c = min(i, X - 1 - i) of the planes i in [low_x, high_x)
    c_low = min(low_x, size_x - high_x)
    c_high = min(high_x - 1, size_x - 1 - low_x, (size_x - 1) // 2) + 1
    lookahead = max(WARP_LOOKAHEAD_BYTES // (src.itemsize * plane), WARP_BLOCK)
    sink[0] += _touch(src, c_low * plane, min(size_x, c_low + lookahead) * plane)
    sink[0] += _touch(src, (size_x - c_low - lookahead) * plane, (size_x - c_low) * plane)
    for c0 in range(c_low, c_high, WARP_BLOCK):
        pairs = min(WARP_BLOCK, c_high - c0)
        ahead = c0 + lookahead
        if ahead < size_x - ahead:  # the planes that the next blocks reach, from both ends
            sink[0] += _touch(src, ahead * plane, min(ahead + WARP_BLOCK, size_x) * plane)
            sink[0] += _touch(src, (size_x - ahead - WARP_BLOCK) * plane, (size_x - ahead) * plane)
        for k in range(WARP_BLOCK):  # the block's rows of the factor (zero beyond the last pair)
            for r in range(rank):
                weights[k, r] = first[c0 + k, r] if k < pairs else zero
        for q0 in range(low_q, high_q, chunk):
            width = min(high_q, q0 + chunk) - q0
            for axis in range(2):  # 1. the partial sums of the symmetric and the antisymmetric columns
                _factor_terms(sums[axis, 0], weights, partial[axis], 0, even, q0, width)
                if even < rank:
                    _factor_terms(sums[axis, 1], weights, partial[axis], even, rank, q0, width)
                else:
                    sums[axis, 1, :, :width] = zero
            for k in range(pairs):
                c = c0 + k
                even_x, odd_x, even_y, odd_y = sums[0, 0, k], sums[0, 1, k], sums[1, 0, k], sums[1, 1, k]
                for mirrored in range(2):
                    i = size_x - 1 - c if mirrored else c
                    if (mirrored and i == c) or i < low_x or i >= high_x:
                        continue
                    sign = minus_one if mirrored else one
                    row = rows_of[i]
                    far = 0
                    for q in range(width):  # 2. positions
                        p = row + (even_x[_u(q)] + sign * odd_x[_u(q)])
                        pc = col[_u(q0 + q)] + (even_y[_u(q)] + sign * odd_y[_u(q)])
                        far += np.int32((p < low_x_far) | (p > high_x_far) | (pc < low_y_far) | (pc > high_y_far))
                        r = _reflect_once(p, edge_x, top_x, zero, one)
                        cc = _reflect_once(pc, edge_y, top_y, zero, one)
                        index[_u(q)], weight_x[_u(q)], weight_y[_u(q)] = _neighbours(
                            r, cc, last_x, last_y, plane_i, size_z_i, lane[_u(q0 + q)])
                    if far > 0:  # a position more than one reflection away: the general formula
                        for q in range(width):
                            p = row + (even_x[_u(q)] + sign * odd_x[_u(q)])
                            pc = col[_u(q0 + q)] + (even_y[_u(q)] + sign * odd_y[_u(q)])
                            # stored in the batch's type, then read back
                            weight_x[_u(q)] = _reflect_into(np.float64(p), float_x, inverse_x, np.float64(edge_x))
                            weight_y[_u(q)] = _reflect_into(np.float64(pc), float_y, inverse_y, np.float64(edge_y))
                            index[_u(q)], weight_x[_u(q)], weight_y[_u(q)] = _neighbours(
                                weight_x[_u(q)], weight_y[_u(q)], last_x, last_y, plane_i, size_z_i, lane[_u(q0 + q)])
                    start = i * plane + q0
                    for ch in range(src.shape[0]):  # 3. interpolation
                        line = src[ch]
                        out_line = dst[ch]
                        for q in range(width):
                            s = index[_u(q)]
                            a = line[_u(s)]
                            b = line[_u(s + step_y)]
                            top = a + (b - a) * weight_y[_u(q)]
                            a = line[_u(s + step_x)]
                            b = line[_u(s + step_x + step_y)]
                            bottom = a + (b - a) * weight_y[_u(q)]
                            out_line[_u(start + q)] = top + (bottom - top) * weight_x[_u(q)]
