"""Throughput of the self-restoration transform presets (cubes/s), against the official per-cube loop.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/transforms.py            # 1 thread, all threads, CUDA if present
    OMP_NUM_THREADS=1 python benchmarks/transforms.py --presets models_genesis --threads 1 --cpu-time

Prints cubes/s for each preset at 64x64x32 (batch 32) on the CPU with 1 thread and with all threads,
for both CPU implementations (``kernel``: numba kernels, the default on CPU; ``torch``: the batched
torch path used on CUDA), and on CUDA when ``torch.cuda.is_available()``. Each row gives cubes/s from
wall time and from the process's CPU time (user + system, and user only), so that figures stay
meaningful on a shared, loaded machine. The numba kernels are single-threaded (parallelism comes from
data-loader workers); the thread count affects only the torch operations. It also times a port of the official Models Genesis
``generate_pair`` per-cube numpy/Python loop (written here from the reference facts, for comparison only)
and reports the speed-up. Targets (issue 4): >= 1,200 cubes/s per core for ``models_genesis`` on the CPU,
>= 20,000 cubes/s on CUDA.

Timings are the median of ``--repeats`` runs after one warm-up run (which also loads or compiles the
numba kernels; ``--compile-time`` measures that first call with an empty cache). Each run transforms
``--calls`` batches: the presets' random decisions make single batches uneven (with ``shuffle_prob=0.5``
a batch of 32 shuffles 16 +- 3 cubes, and shuffling is most of the cost).

Allocator: by default the process keeps freed large blocks in its heap
(:func:`semantic_genesis.utils.allocator.keep_large_blocks_in_heap`, which the training engine applies
when it trains on the CPU), so that successive batches reuse their buffers instead of faulting in fresh
pages; ``--allocator default`` keeps glibc's defaults for comparison.

The ``official_*`` functions below reproduce the reference process literally (stdlib ``random`` for the
decisions, numpy for the arrays, one cube ``(1, X, Y, Z)`` at a time); the tests also use them as the
reference law.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from math import comb

import numpy as np


# --------------------------------------------------------------------------------------------------
# Port of the official per-cube transforms, for timing and as a reference law.
#
# Written from the official code's logic (Models Genesis ``utils.py``: ``bernstein_poly``,
# ``bezier_curve``, ``data_augmentation``, ``nonlinear_transformation``, ``local_pixel_shuffling``,
# ``image_in_painting``, ``image_out_painting``, ``generate_pair``; Semantic Genesis data loader:
# ``elastic_transform`` and ``luna_loader``). Every function takes one sample ``(1, *spatial)`` with two
# or three spatial axes: the official code is 3D only and no 2D code was released, so the 2D loop applies
# the same four transforms to ``(1, H, W)`` images, with the same per-axis rules (window sizes
# ``dim // 10``, ``dim // 6 .. dim // 3``, ``dim - (3 dim // 7 .. 4 dim // 7)``, margins of 3).
# --------------------------------------------------------------------------------------------------
def official_bezier(points: list[list[float]], n_times: int = 100000) -> tuple[np.ndarray, np.ndarray]:
    """Bezier curve with the reference's reversed Bernstein weights ``C(n,i) t^(n-i) (1-t)^i``."""
    n = len(points) - 1
    t = np.linspace(0.0, 1.0, n_times)
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    weights = np.array([comb(n, i) * t ** (n - i) * (1 - t) ** i for i in range(n + 1)])
    return xs @ weights, ys @ weights


def official_nonlinear(x: np.ndarray, prob: float = 0.5, n_times: int = 100000) -> np.ndarray:
    if random.random() >= prob:
        return x
    points = [[0, 0], [random.random(), random.random()], [random.random(), random.random()], [1, 1]]
    xvals, yvals = official_bezier(points, n_times)
    if random.random() < 0.5:
        xvals = np.sort(xvals)
    else:
        xvals, yvals = np.sort(xvals), np.sort(yvals)
    return np.interp(x, xvals, yvals)


def _box(spatial: tuple[int, ...], corner: list[int], size: list[int]) -> tuple[slice, ...]:
    return (slice(None),) + tuple(slice(c, c + s) for c, s in zip(corner, size))


def official_local_shuffle(x: np.ndarray, prob: float = 0.5, num_block: int = 10000) -> np.ndarray:
    if random.random() >= prob:
        return x
    image_temp = copy.deepcopy(x)
    orig_image = copy.deepcopy(x)
    spatial = x.shape[1:]
    for _ in range(num_block):
        size = [random.randint(1, dim // 10) for dim in spatial]
        corner = [random.randint(0, dim - s) for dim, s in zip(spatial, size)]
        box = _box(spatial, corner, size)
        window = orig_image[box][0].flatten()
        np.random.shuffle(window)
        image_temp[box] = window.reshape([1] + size)
    return image_temp


def official_inpaint(x: np.ndarray, max_windows: int = 5, continue_prob: float = 0.95) -> np.ndarray:
    """``image_in_painting``; the Semantic Genesis loader paints one window (``max_windows=1, continue_prob=1``)."""
    spatial = x.shape[1:]
    cnt = max_windows
    while cnt > 0 and random.random() < continue_prob:
        size = [random.randint(dim // 6, dim // 3) for dim in spatial]
        corner = [random.randint(3, dim - s - 3) for dim, s in zip(spatial, size)]
        x[_box(spatial, corner, size)] = np.random.rand(*size)
        cnt -= 1
    return x


def official_outpaint(x: np.ndarray, max_extra_windows: int = 4, continue_prob: float = 0.95) -> np.ndarray:
    """``image_out_painting``; the Semantic Genesis loader keeps one window (``max_extra_windows=0``)."""
    spatial = x.shape[1:]
    image_temp = copy.deepcopy(x)
    x = np.random.rand(*x.shape)

    def paste() -> None:
        size = [dim - random.randint(3 * dim // 7, 4 * dim // 7) for dim in spatial]
        corner = [random.randint(3, dim - s - 3) for dim, s in zip(spatial, size)]
        box = _box(spatial, corner, size)
        x[box] = image_temp[box]

    paste()
    cnt = max_extra_windows
    while cnt > 0 and random.random() < continue_prob:
        paste()
        cnt -= 1
    return x


def official_flip(x: np.ndarray, y: np.ndarray, prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    cnt = 3
    while random.random() < prob and cnt > 0:
        degree = random.choice(list(range(x.ndim - 1)))  # 3D: [0, 1, 2]; axis 0 is the channel (official bug)
        x = np.flip(x, axis=degree)
        y = np.flip(y, axis=degree)
        cnt -= 1
    return x, y


def official_generate_pair(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Models Genesis ``generate_pair`` on a batch ``(B, 1, *spatial)``, one sample at a time."""
    x = copy.deepcopy(cubes)
    y = copy.deepcopy(cubes)
    for n in range(cubes.shape[0]):
        x[n], y[n] = official_flip(x[n], y[n], 0.4)
        x[n] = official_local_shuffle(x[n], prob=0.5)
        x[n] = official_nonlinear(x[n], prob=0.9)
        if random.random() < 0.9:
            if random.random() < 0.2:
                x[n] = official_inpaint(x[n])
            else:
                x[n] = official_outpaint(x[n])
    return x, y


def official_elastic(image: np.ndarray, alpha: float = 991.0, sigma: float = 8.0) -> np.ndarray:
    """Semantic Genesis ``elastic_transform`` of one channel ``(*spatial)``: U[-1, 1] noise smoothed by
    ``gaussian_filter(mode="constant")`` times ``alpha`` displaces the first two axes;
    ``map_coordinates(order=1, mode="reflect")`` resamples."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    shape = image.shape
    dx = gaussian_filter(np.random.rand(*shape) * 2 - 1, sigma, mode="constant", cval=0) * alpha
    dy = gaussian_filter(np.random.rand(*shape) * 2 - 1, sigma, mode="constant", cval=0) * alpha
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    indices = [grid[0] + dx, grid[1] + dy] + list(grid[2:])
    return map_coordinates(image, [i.reshape(-1) for i in indices], order=1, mode="reflect").reshape(shape)


def official_semantic_genesis_pair(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semantic Genesis ``luna_loader`` restoration pairs on a batch ``(B, 1, *spatial)``: the target is the
    original; the input is elastically warped, then exactly one of local shuffle (5 windows),
    non-linear, in-painting (one window) and out-painting (one window), with p 0.25 each."""
    x = copy.deepcopy(cubes)
    for n in range(cubes.shape[0]):
        x[n, 0] = official_elastic(x[n, 0])
        r = random.random()
        if r <= 0.25:
            x[n] = official_local_shuffle(x[n], prob=1.0, num_block=5)
        elif r <= 0.5:
            x[n] = official_nonlinear(x[n], prob=1.0)
        elif r <= 0.75:
            x[n] = official_inpaint(x[n], max_windows=1, continue_prob=1.0)
        else:
            x[n] = official_outpaint(x[n], max_extra_windows=0)
    return x, copy.deepcopy(cubes)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------
def _cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _timings(fn, repeats: int, sync=None) -> dict[str, float]:
    """Median wall, process-CPU (user + system) and user-CPU seconds of ``fn`` after one warm-up call.

    On a loaded machine wall time counts other processes' work; CPU time counts only this process
    (user: our computation; system: mostly page faults of fresh output buffers).
    """
    fn()
    if sync:
        sync()
    wall, cpu, user = [], [], []
    for _ in range(repeats):
        u0, s0 = _cpu_seconds()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        wall.append(time.perf_counter() - start)
        u1, s1 = _cpu_seconds()
        cpu.append(u1 - u0 + s1 - s0)
        user.append(u1 - u0)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "user": statistics.median(user)}


def _first_call_seconds(shape: tuple[int, ...], batch: int) -> float:
    """Wall seconds of the first ``models_genesis`` call in a fresh process with an empty numba cache
    (numba import + compiling every kernel), measured in a subprocess."""
    code = (
        "import time, torch; from semantic_genesis.transforms import build_preset; "
        f"x = torch.rand({batch}, 1, *{tuple(shape)}); p = build_preset('models_genesis'); "
        "t = time.perf_counter(); p(x, torch.Generator().manual_seed(0)); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _row(label: str, name: str, batch: int, t: dict[str, float], extra: str = "") -> str:
    return (f"{label:>22}  {name:>18}: {batch / t['wall']:9.1f} wall  {batch / t['cpu']:9.1f} cpu  "
            f"{batch / t['user']:9.1f} user cubes/s{extra}")


def main(argv: list[str] | None = None) -> int:
    import torch

    from semantic_genesis.transforms import available_presets, build_preset
    from semantic_genesis.transforms._backend import kernels, use_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=available_presets())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 64, 32])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="*", default=None,
                        help="CPU thread counts (default: 1 and all cores)")
    parser.add_argument("--backends", nargs="*", default=["kernel", "torch"], choices=["kernel", "torch"],
                        help="CPU implementations to time (kernel: numba, torch: batched torch ops)")
    parser.add_argument("--official-cubes", type=int, default=8, help="cubes timed with the official loop")
    parser.add_argument("--cpu-time", action="store_true",
                        help="base the speed-up on process CPU time instead of wall time (loaded machines)")
    parser.add_argument("--compile-time", action="store_true",
                        help="also time the first call with an empty numba cache (a subprocess)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--calls", type=int, default=8, help="batches transformed per timed run")
    parser.add_argument("--allocator", choices=["heap", "default"], default="heap",
                        help="heap: keep freed large blocks in the heap, as training on the CPU does")
    args = parser.parse_args(argv)
    if args.allocator == "heap":
        from semantic_genesis.utils.allocator import keep_large_blocks_in_heap

        settings = keep_large_blocks_in_heap()
        print(f"allocator: {'glibc heap for blocks below 32 MiB' if settings else 'default (not glibc)'}")
    else:
        print("allocator: glibc defaults")

    shape = tuple(args.shape)
    cpu_x = torch.rand((args.batch, 1) + shape)
    all_threads = os.cpu_count() or 1
    print(f"batch {args.batch} x 1 x {'x'.join(map(str, shape))}, {args.calls} batches per run, median of {args.repeats} runs; "
          "cubes/s from wall time, process CPU time (user + system) and user CPU time")
    backends = [b for b in args.backends if b != "kernel" or kernels() is not None]
    if "kernel" in args.backends and "kernel" not in backends:
        print("kernel backend: numba not installed, skipped")

    results: dict[tuple[str, str], dict[str, float]] = {}
    for threads in args.threads or sorted({1, all_threads}):
        torch.set_num_threads(threads)
        for backend in backends:
            label = f"cpu {threads} thr {backend}"
            with use_backend(backend):
                for name in args.presets:
                    preset = build_preset(name)
                    generator = torch.Generator().manual_seed(0)
                    t = _timings(lambda: [preset(cpu_x, generator) for _ in range(args.calls)], args.repeats)
                    results[(name, label)] = t
                    print(_row(label, name, args.batch * args.calls, t))

    if torch.cuda.is_available() and not args.no_cuda:
        gpu_x = cpu_x.cuda()
        for name in args.presets:
            preset = build_preset(name)
            generator = torch.Generator().manual_seed(0)
            t = _timings(lambda: [preset(gpu_x, generator) for _ in range(args.calls)], args.repeats,
                         torch.cuda.synchronize)
            print(f"{'cuda':>22}  {name:>18}: {args.batch * args.calls / t['wall']:9.1f} wall cubes/s")
    else:
        print("cuda: not available")

    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    cubes = np.random.rand(args.official_cubes, 1, *shape)
    official = _timings(lambda: official_generate_pair(cubes), max(1, args.repeats // 3))
    print(_row("official loop (numpy)", "models_genesis", args.official_cubes, official))
    key = "cpu" if args.cpu_time else "wall"
    for backend in backends:
        ours = results.get(("models_genesis", f"cpu 1 thr {backend}"))
        if ours:
            speedup = (args.batch * args.calls / ours[key]) / (args.official_cubes / official[key])
            print(f"speed-up of models_genesis ({backend}, 1 CPU thread, {key} time) over the official loop: "
                  f"{speedup:.1f}x")
    if args.compile_time and kernels() is not None:
        print(f"first models_genesis call with an empty numba cache (import + compile): "
              f"{_first_call_seconds(shape, args.batch):.1f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
