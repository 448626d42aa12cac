"""Speed of the lung content test: the official per-voxel loop vs the summed-area-table version.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/content_test.py [--shape 256 256 128] [--trials 200] [--loop-trials 3]

Prints milliseconds per trial (one candidate window of the paper's 64x64x32 (+3 look-ahead) size) for

* ``loop``: the official pure-Python quadruple loop (the lung test of the official generators
  ``infinite_generator_3D.py`` and ``pattern_generator_3D.py``);
* ``vectorised``: :func:`semantic_genesis.preprocess.lung_scores`, with the per-scan table build
  amortised over ``--trials`` candidates (what cube/pattern generation does), and the cost of a
  single call on the volume with one window (computed directly on the window's crop);

and checks that both give identical scores on the looped trials.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from semantic_genesis.preprocess import lung_scores, lung_table


def official_loop(unit: np.ndarray, corner, size, threshold=0.425, look_ahead=3) -> float:
    x0, y0, z0 = corner
    sx, sy, sz = size
    window = unit[x0 : x0 + sx, y0 : y0 + sy, z0 : z0 + sz + look_ahead]
    total = 0.0
    for d in range(sz):
        for i in range(sx):
            for j in range(sy):
                t = look_ahead - 1
                for k in range(look_ahead):
                    if d + k < window.shape[2] and window[i, j, d + k] >= threshold:
                        t = k
                        break
                total += 1.0 - t / (look_ahead - 1)
    return total / (sx * sy * sz)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128))
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 32))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--loop-trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    shape, size = tuple(args.shape), tuple(args.size)
    # A crude chest: dark lungs inside tissue, so scores vary between windows.
    xx, yy = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    lungs = ((np.abs(xx) - 0.45) ** 2 / 0.09 + yy**2 / 0.5) < 1
    unit = np.where(lungs[:, :, None], 0.1, 0.5) + rng.normal(0, 0.08, size=shape)
    unit = np.clip(unit, 0, 1).astype(np.float32)
    hi = np.array(shape) - np.array(size) - 3
    corners = np.stack([rng.integers(0, hi[a] + 1, args.trials) for a in range(3)], axis=1)

    t0 = time.perf_counter()
    loop_scores = np.array([official_loop(unit, tuple(c), size) for c in corners[: args.loop_trials]])
    loop_ms = (time.perf_counter() - t0) / args.loop_trials * 1e3

    t0 = time.perf_counter()
    table = lung_table(unit)
    build_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    scores = lung_scores(table, corners, size)
    query_ms = (time.perf_counter() - t0) * 1e3
    amortised_ms = (build_ms + query_ms) / args.trials
    t0 = time.perf_counter()
    lung_scores(unit, corners[:1], size)
    single_ms = (time.perf_counter() - t0) * 1e3

    identical = np.array_equal(scores[: args.loop_trials], loop_scores)
    print(f"volume {shape}, window {size} (+3 look-ahead), {args.trials} candidate windows")
    print(f"loop (official)        {loop_ms:10.1f} ms per trial  (mean of {args.loop_trials})")
    print(f"vectorised, amortised  {amortised_ms:10.3f} ms per trial  (table build {build_ms:.1f} ms + "
          f"{args.trials} queries {query_ms:.2f} ms)")
    print(f"vectorised, one call   {single_ms:10.1f} ms (one window from a volume: computed on its crop)")
    print(f"speed-up amortised     {loop_ms / amortised_ms:10.0f}x   one call {loop_ms / single_ms:.1f}x")
    print(f"identical scores on the looped trials: {identical}")
    print(f"accepted (score <= 0.15): {(scores <= 0.15).mean():.2f}")


if __name__ == "__main__":
    main()
