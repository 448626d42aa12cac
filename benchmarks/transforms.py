"""Throughput of the self-restoration transform presets against the official per-sample loops, 3D and 2D.

Usage::

    python benchmarks/transforms.py --cpu-time                      # the comparison table (1 thread)
    python benchmarks/transforms.py --cpu-time --presets all --threads 1 2 --backends kernel torch
    python benchmarks/transforms.py --device cuda                   # the same on a GPU (see gpu_check.py)
    python benchmarks/transforms.py --host-work --calls 2          # host work per call on a GPU: old vs new path

For each of ``models_genesis`` and ``semantic_genesis`` on ``(32, 1, 64, 64, 32)`` cubes and
``(32, 1, 224, 224)`` images it prints our samples/s with one CPU thread (the compiled kernels, called
in a plain loop as a DataLoader worker calls them, with no allocator setting or environment variable
made by the caller), the official-equivalent loop's samples/s measured in the same run, and the ratio
(target: >= 50x, and >= 1,200 cubes/s for models_genesis in 3D). ``--cpu-time`` bases every figure on
the process's CPU time (user + system) instead of wall time, which a machine shared with other jobs
inflates; ``--repeats`` runs are timed and the median is printed, with the range.

The official loops are ports written from the official code's logic (below): Models Genesis
``generate_pair`` (flip, local shuffle, non-linear, in-/out-painting, one cube at a time with stdlib
``random`` and numpy) and the Semantic Genesis loader (``elastic_transform`` with scipy's
``gaussian_filter`` and ``map_coordinates``, then exactly one of the four transforms). No 2D code was
released, so the 2D loops apply the same functions to ``(1, H, W)`` images (the official 2D Models
Genesis took ~20 s per batch of 128 images, Models Genesis issue #24). ``--presets all`` adds the
single-transform presets (ours only), ``--backends torch`` the batched torch path with CPU draws and
``--backends device`` the device path that a GPU runs (every draw on the batch's device), both on the CPU.

Each timed run transforms ``--calls`` batches: the presets' random decisions make single batches uneven
(with ``shuffle_prob=0.5`` a batch of 32 shuffles 16 +- 3 cubes, and shuffling is the costliest stage).
``--compile-time`` also measures the first call with an empty numba cache (a subprocess).
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


SHAPES = {"3D": (64, 64, 32), "2D": (224, 224)}
OFFICIAL = {"models_genesis": official_generate_pair, "semantic_genesis": official_semantic_genesis_pair}


def _rate(count: int, t: dict[str, float], key: str) -> float:
    return count / t[key]


def _spread(count: int, t: dict[str, float], key: str) -> str:
    rates = sorted(count / v for v in t[f"{key}_all"])
    return f"{count / t[key]:9.1f} ({rates[0]:.0f}-{rates[-1]:.0f})"


def _timings_all(fn, repeats: int, sync=None) -> dict[str, float]:
    """:func:`_timings` plus every run's seconds (``wall_all``, ``cpu_all``) for ranges."""
    fn()
    if sync:
        sync()
    wall, cpu = [], []
    for _ in range(repeats):
        u0, s0 = _cpu_seconds()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        wall.append(time.perf_counter() - start)
        u1, s1 = _cpu_seconds()
        cpu.append(u1 - u0 + s1 - s0)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "wall_all": wall, "cpu_all": cpu}


def _first_call_seconds(shape: tuple[int, ...], batch: int) -> float:
    """Wall seconds of the first ``models_genesis`` call in a fresh process with an empty numba cache
    (numba import + compiling every kernel), measured in a subprocess."""
    code = (
        "import time, torch; from semantic_genesis.transforms import build_preset; "
        f"x = torch.rand({batch}, 1, *{tuple(shape)}); p = build_preset('models_genesis', spatial_dims={len(shape)}); "
        "t = time.perf_counter(); p(x, torch.Generator().manual_seed(0)); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def time_ours(preset, x, calls: int, repeats: int, sync=None) -> dict[str, float]:
    """Seconds per run of ``calls`` preset calls in a plain loop (each call's outputs dropped by the next)."""
    import torch

    generator = torch.Generator().manual_seed(0)

    def run() -> None:
        for _ in range(calls):
            inputs, targets = preset(x, generator)
        del inputs, targets

    return _timings_all(run, repeats, sync)


def time_official(name: str, shape: tuple[int, ...], samples: int, repeats: int) -> dict[str, float]:
    random.seed(0)
    np.random.seed(0)
    batch = np.random.rand(samples, 1, *shape)
    return _timings_all(lambda: OFFICIAL[name](batch), repeats)


def map_accuracy(count: int) -> None:
    """Worst difference between our intensity maps (both backends) and the official ``np.interp`` of
    the 100,000-sample Bezier curve, over ``count`` random maps, with the table-only error for scale."""
    import torch

    from semantic_genesis.transforms._backend import kernels, use_backend
    from semantic_genesis.transforms._plan import KernelPlan, run_plan
    from semantic_genesis.transforms.nonlinear import apply_maps, sample_nonlinear_maps

    ends = np.concatenate([10.0 ** -np.arange(1, 9), [0.0]])
    values = np.unique(np.concatenate([np.linspace(0, 1, 2049), ends, 1 - ends]))
    maps = sample_nonlinear_maps(count, torch.Generator().manual_seed(0))
    x = torch.tensor(values, dtype=torch.float64).expand(count, 1, -1).contiguous()
    ours = {"torch": apply_maps(x, maps)[:, 0].numpy()}
    if kernels() is not None:
        with use_backend("kernel"):
            ours["kernel"] = run_plan(x, KernelPlan.for_batch(x, maps=(torch.arange(count), maps)))[0][:, 0].numpy()
    grid = np.linspace(0, 1, maps.lut_size + 1)
    worst = {name: 0.0 for name in ours} | {"table only": 0.0}
    for i in range(count):
        a1, b1, a2, b2 = maps.controls[i].tolist()
        xs, ys = official_bezier([[0, 0], [a1, b1], [a2, b2], [1, 1]])
        ref = np.interp(values, np.sort(xs), ys if maps.inverted[i] else np.sort(ys))
        for name, out in ours.items():
            worst[name] = max(worst[name], float(np.abs(out[i] - ref).max()))
        worst["table only"] = max(worst["table only"], float(np.abs(np.interp(values, grid, maps.table[i].numpy()) - ref).max()))
    cells = float(maps.exact_cells().double().mean())
    print(f"intensity maps vs the official np.interp, {count} random maps, {len(values)} values each: worst "
          + ", ".join(f"{name} {err:.1e}" for name, err in worst.items())
          + f"; {100 * cells:.2f} % of the table cells are evaluated exactly")


def host_work(shape: tuple[int, ...], batch: int, calls: int, presets: list[str]) -> None:
    """The host's share of a call on a GPU, estimated on the CPU: the old torch path (parameters drawn
    on the CPU) against the device path (draws on the device), both run on CPU tensors.

    Per call it prints the aten operations dispatched, those that wait for a GPU (``nonzero``, ``item``,
    ...), and the Python and dispatch time: the thread's CPU time for the calls under a dispatch hook minus
    its CPU time inside the operations (the hook's own cost, a few microseconds per operation, stands for
    the launch cost of a GPU operation). On a GPU the device work runs asynchronously, so the operations
    (a few microseconds of launch each), the waits and the old path's CPU-side parameter work bound the
    throughput. The operation and wait counts are exact; the milliseconds are rough: they also hold the
    CPU allocator's work on the large tensors (freed outside the operations), and the old path's CPU
    draws, argsorts and exact-map solves count as device work although a GPU leaves them on the host.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from semantic_genesis.transforms import build_preset
    from semantic_genesis.transforms._backend import use_backend

    syncing = {"nonzero", "_local_scalar_dense", "is_nonzero", "item", "masked_select", "unique", "repeat_interleave"}

    class Hook(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = self.syncs = 0
            self.inside = 0.0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            start = time.thread_time()
            out = func(*args, **(kwargs or {}))
            self.inside += time.thread_time() - start
            self.ops += 1
            self.syncs += func.__name__.split(".")[0] in syncing
            return out

    x = torch.rand((batch, 1) + shape)
    print(f"host work per call on a GPU, estimated on the CPU (batch {batch} x {'x'.join(map(str, shape))}, "
          f"{calls} calls; old = torch path with CPU draws, new = device path):")
    for name in presets:
        preset = build_preset(name, spatial_dims=len(shape))
        figures = {}
        for backend in ("torch", "device"):
            with use_backend(backend):
                generator = torch.Generator().manual_seed(0)
                preset(x, generator)
                hook = Hook()
                start = time.thread_time()  # CPU time of this thread: other jobs on the machine do not count
                with hook:
                    for _ in range(calls):
                        preset(x, generator)
                wall = (time.thread_time() - start) / calls
                figures[backend] = (hook.ops / calls, hook.syncs / calls, wall, wall - hook.inside / calls)
        for backend, label in (("torch", "old"), ("device", "new")):
            ops, syncs, wall, host = figures[backend]
            print(f"  {name:>17} {label}: {ops:7.0f} ops, {syncs:5.1f} waits, {1e3 * host:8.2f} ms Python/dispatch "
                  f"({1e3 * wall:8.1f} ms CPU time in all)")
        ratio = figures["torch"][3] / max(figures["device"][3], 1e-9)
        print(f"  {name:>17} old/new: {figures['torch'][0] / figures['device'][0]:.1f}x ops, "
              f"{figures['torch'][1] / max(figures['device'][1], 1e-9):.1f}x waits, {ratio:.1f}x Python/dispatch time")


def main(argv: list[str] | None = None) -> int:
    import torch

    from semantic_genesis.transforms import available_presets, build_preset
    from semantic_genesis.transforms._backend import kernels, use_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=["models_genesis", "semantic_genesis"],
                        help="presets to time ('all': every preset; official loops exist for the first two)")
    parser.add_argument("--dims", nargs="*", default=["3D", "2D"], choices=list(SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=8, help="batches transformed per timed run")
    parser.add_argument("--threads", type=int, nargs="*", default=[1], help="CPU thread counts for torch ops")
    parser.add_argument("--backends", nargs="*", default=["kernel"], choices=["kernel", "torch", "device"],
                        help="CPU implementations (kernel: compiled numba kernels; torch: batched torch ops with "
                             "CPU draws; device: the device path that a GPU runs, here on the CPU)")
    parser.add_argument("--official-samples", type=int, default=6, help="samples per run of an official loop")
    parser.add_argument("--cpu-time", action="store_true",
                        help="figures from process CPU time instead of wall time (shared machines)")
    parser.add_argument("--device", default="cpu", help="'cpu', or 'cuda' to time the presets on a GPU")
    parser.add_argument("--compile-time", action="store_true",
                        help="also time the first call with an empty numba cache (a subprocess)")
    parser.add_argument("--host-work", action="store_true",
                        help="only estimate the host's work per call on a GPU: old torch path against the device path")
    parser.add_argument("--map-accuracy", type=int, default=0, metavar="N",
                        help="also compare N random intensity maps with the official np.interp")
    args = parser.parse_args(argv)
    presets = available_presets() if args.presets == ["all"] else args.presets
    if args.host_work:
        torch.set_num_threads(1)
        for dims in args.dims:
            host_work(SHAPES[dims], args.batch, args.calls, [p for p in presets if p in OFFICIAL])
        return 0
    key = "cpu" if args.cpu_time and args.device == "cpu" else "wall"
    print(f"batch {args.batch}, {args.calls} batches per run, median (range) of {args.repeats} runs, "
          f"samples/s from {'process CPU' if key == 'cpu' else 'wall'} time; {os.cpu_count()} CPUs visible")
    backends = [b for b in args.backends if b != "kernel" or kernels() is not None]
    if "kernel" in args.backends and "kernel" not in backends:
        print("kernel backend: numba not installed, skipped")

    ours: dict[tuple[str, str, str], dict[str, float]] = {}
    for dims in args.dims:
        shape = SHAPES[dims]
        x = torch.rand((args.batch, 1) + shape).to(args.device)
        count = args.batch * args.calls
        if args.device != "cpu":
            for name in presets:
                t = time_ours(build_preset(name, spatial_dims=len(shape)), x, args.calls, args.repeats, torch.cuda.synchronize)
                ours[(name, dims, args.device)] = t
                print(f"{args.device:>8} {dims} {name:>18}: {_spread(count, t, 'wall')} samples/s")
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            for backend in backends:
                label = f"cpu {threads}t {backend}"
                with use_backend(backend):
                    for name in presets:
                        t = time_ours(build_preset(name, spatial_dims=len(shape)), x, args.calls, args.repeats)
                        ours[(name, dims, label)] = t
                        print(f"{label:>16} {dims} {name:>18}: {_spread(count, t, key)} samples/s")
    if args.device != "cpu":
        return 0

    torch.set_num_threads(1)
    print("official-equivalent loops (numpy/scipy, one sample at a time):")
    for dims in args.dims:
        for name in [p for p in presets if p in OFFICIAL]:
            official = time_official(name, SHAPES[dims], args.official_samples, max(1, args.repeats // 2))
            rate = _rate(args.official_samples, official, key)
            print(f"{'official':>16} {dims} {name:>18}: {_spread(args.official_samples, official, key)} samples/s")
            for backend in backends:
                t = ours.get((name, dims, f"cpu 1t {backend}"))
                if t:
                    mine = _rate(args.batch * args.calls, t, key)
                    print(f"{'ratio':>16} {dims} {name:>18}: {mine / rate:9.1f}x  ({backend}, 1 thread, {key} time)")
    if args.map_accuracy:
        map_accuracy(args.map_accuracy)
    if args.compile_time and kernels() is not None:
        print(f"first models_genesis call with an empty numba cache (import + compile): "
              f"{_first_call_seconds(SHAPES['3D'], args.batch):.1f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
