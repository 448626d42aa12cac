"""Throughput of the self-restoration transform presets (cubes/s), against the official per-cube loop.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/transforms.py            # 1 thread, all threads, CUDA if present
    python benchmarks/transforms.py --presets models_genesis --batch 32 --repeats 5

Prints cubes/s for each preset at 64x64x32 (batch 32) on the CPU with 1 thread and with all threads,
and on CUDA when ``torch.cuda.is_available()``. It also times a port of the official Models Genesis
``generate_pair`` per-cube numpy/Python loop (written here from the reference facts, for comparison only)
and reports the speed-up. Targets (issue 4): >= 1,200 cubes/s per core for ``models_genesis`` on the CPU,
>= 20,000 cubes/s on CUDA.

Timings are the median of ``--repeats`` runs after one warm-up run.

The ``official_*`` functions below reproduce the reference process literally (stdlib ``random`` for the
decisions, numpy for the arrays, one cube ``(1, X, Y, Z)`` at a time); the tests also use them as the
reference law.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import time
from math import comb

import numpy as np


# --------------------------------------------------------------------------------------------------
# Port of the official per-cube transforms (reference §2), for timing and as a reference law.
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


def official_local_shuffle(x: np.ndarray, prob: float = 0.5, num_block: int = 10000) -> np.ndarray:
    if random.random() >= prob:
        return x
    image_temp = copy.deepcopy(x)
    orig_image = copy.deepcopy(x)
    _, rows, cols, deps = x.shape
    for _ in range(num_block):
        bx = random.randint(1, rows // 10)
        by = random.randint(1, cols // 10)
        bz = random.randint(1, deps // 10)
        nx = random.randint(0, rows - bx)
        ny = random.randint(0, cols - by)
        nz = random.randint(0, deps - bz)
        window = orig_image[0, nx : nx + bx, ny : ny + by, nz : nz + bz].flatten()
        np.random.shuffle(window)
        image_temp[0, nx : nx + bx, ny : ny + by, nz : nz + bz] = window.reshape((bx, by, bz))
    return image_temp


def official_inpaint(x: np.ndarray) -> np.ndarray:
    _, rows, cols, deps = x.shape
    cnt = 5
    while cnt > 0 and random.random() < 0.95:
        bx = random.randint(rows // 6, rows // 3)
        by = random.randint(cols // 6, cols // 3)
        bz = random.randint(deps // 6, deps // 3)
        nx = random.randint(3, rows - bx - 3)
        ny = random.randint(3, cols - by - 3)
        nz = random.randint(3, deps - bz - 3)
        x[:, nx : nx + bx, ny : ny + by, nz : nz + bz] = np.random.rand(bx, by, bz)
        cnt -= 1
    return x


def official_outpaint(x: np.ndarray) -> np.ndarray:
    _, rows, cols, deps = x.shape
    image_temp = copy.deepcopy(x)
    x = np.random.rand(*x.shape)

    def paste() -> None:
        bx = rows - random.randint(3 * rows // 7, 4 * rows // 7)
        by = cols - random.randint(3 * cols // 7, 4 * cols // 7)
        bz = deps - random.randint(3 * deps // 7, 4 * deps // 7)
        nx = random.randint(3, rows - bx - 3)
        ny = random.randint(3, cols - by - 3)
        nz = random.randint(3, deps - bz - 3)
        x[:, nx : nx + bx, ny : ny + by, nz : nz + bz] = image_temp[:, nx : nx + bx, ny : ny + by, nz : nz + bz]

    paste()
    cnt = 4
    while cnt > 0 and random.random() < 0.95:
        paste()
        cnt -= 1
    return x


def official_flip(x: np.ndarray, y: np.ndarray, prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    cnt = 3
    while random.random() < prob and cnt > 0:
        degree = random.choice([0, 1, 2])  # axis 0 of (1, X, Y, Z) is the channel: the official bug
        x = np.flip(x, axis=degree)
        y = np.flip(y, axis=degree)
        cnt -= 1
    return x, y


def official_generate_pair(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Models Genesis ``generate_pair`` on a batch ``(B, 1, X, Y, Z)``, one cube at a time."""
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


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------
def _median_time(fn, repeats: int, sync=None) -> float:
    fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import torch

    from semantic_genesis.transforms import available_presets, build_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=available_presets())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 64, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--official-cubes", type=int, default=12, help="cubes timed with the official loop")
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args(argv)

    shape = tuple(args.shape)
    cpu_x = torch.rand((args.batch, 1) + shape)
    all_threads = os.cpu_count() or 1
    print(f"batch {args.batch} x 1 x {'x'.join(map(str, shape))}, median of {args.repeats} runs")

    results: dict[tuple[str, str], float] = {}
    settings = [("cpu 1 thread", 1), (f"cpu {all_threads} threads", all_threads)]
    for label, threads in settings:
        torch.set_num_threads(threads)
        for name in args.presets:
            preset = build_preset(name)
            generator = torch.Generator().manual_seed(0)
            seconds = _median_time(lambda: preset(cpu_x, generator), args.repeats)
            results[(name, label)] = args.batch / seconds
            print(f"{label:>16}  {name:>18}: {args.batch / seconds:10.1f} cubes/s")

    if torch.cuda.is_available() and not args.no_cuda:
        gpu_x = cpu_x.cuda()
        for name in args.presets:
            preset = build_preset(name)
            generator = torch.Generator().manual_seed(0)
            seconds = _median_time(lambda: preset(gpu_x, generator), args.repeats, torch.cuda.synchronize)
            results[(name, "cuda")] = args.batch / seconds
            print(f"{'cuda':>16}  {name:>18}: {args.batch / seconds:10.1f} cubes/s")
    else:
        print("cuda: not available")

    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    cubes = np.random.rand(args.official_cubes, 1, *shape)
    seconds = _median_time(lambda: official_generate_pair(cubes), max(1, args.repeats // 2))
    official = args.official_cubes / seconds
    print(f"{'official loop':>16}  {'models_genesis':>18}: {official:10.1f} cubes/s (1 core, numpy)")
    ours = results.get(("models_genesis", "cpu 1 thread"))
    if ours:
        print(f"speed-up of models_genesis on 1 CPU thread over the official loop: {ours / official:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
