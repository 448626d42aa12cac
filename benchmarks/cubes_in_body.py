"""How many cubes and discovery coordinates lie inside the body, per content test and border rule.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cubes_in_body.py                                   # LUNA16-like grid
    OMP_NUM_THREADS=1 python benchmarks/cubes_in_body.py --shape 256 256 70 --spacing 1.4 1.4 5.0 --size 32 32 16

Generates ``--patients`` chest CT phantoms on the given grid (default: LUNA16's typical 512 x 512 x 140
at 0.7 x 0.7 x 2.5 mm), then for each setting draws ``--cubes`` cubes per scan (``sample_cubes``) and
``--coordinates`` discovery coordinates per reference (``sample_coordinates``, the other patients as
neighbours) and prints the share with at least half of their voxels inside the body (the phantom's
label map > 0), for the crop in the reference and the crops it maps to in the neighbours:

* ``lung_official + relative``: the darkness-only lung test with relative borders (the old default);
* ``lung + relative``: the body-aware lung test (the default);
* ``lung_official + official``: the official generator (darkness test, absolute 100/100/30 borders,
  scaled by 512 / X for other grids).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from semantic_genesis.config import load_config
from semantic_genesis.cubes import sample_cubes
from semantic_genesis.discovery.coordinates import (
    Borders,
    ContentTest,
    CoordinateError,
    body_frame,
    relative_to_corner,
    sample_coordinates,
)
from semantic_genesis.phantoms.ct import make_ct_patient
from semantic_genesis.preprocess import BoxSums, ct_to_unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 140))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 2.5))
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 32), help="cube / pattern size")
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--cubes", type=int, default=32)
    parser.add_argument("--coordinates", type=int, default=44)
    args = parser.parse_args()

    t0 = time.perf_counter()
    cohort = []
    for i in range(args.patients):
        p = make_ct_patient(i, seed=0, shape=args.shape, spacing=args.spacing)
        unit = ct_to_unit(p.hu.astype(np.float32))
        cohort.append((unit, BoxSums(p.labels > 0), body_frame(unit)))
        del p
    print(f"{args.patients} phantoms of {tuple(args.shape)} at {tuple(args.spacing)} mm in {time.perf_counter() - t0:.0f} s")
    scale = args.shape[0] / 512.0
    official = [int(round(100 * scale)), int(round(100 * scale)), int(round(30 * args.shape[2] / 140.0))]
    size = list(args.size)
    settings = {
        "lung_official + relative": ["lung_official", "relative"],
        "lung + relative": ["lung", "relative"],
        "lung_official + official": ["lung_official", "official"],
    }
    for name, (test_name, rule) in settings.items():
        cfg = load_config(None, [
            f"cubes.cube_size={size}", f"cubes.cubes_per_scan={args.cubes}", f"cubes.content_test={test_name}",
            f"cubes.border_rule={rule}", f"cubes.border_voxels={official}", f"discovery.pattern_size={size}",
            f"discovery.content_test={test_name}", f"discovery.border_rule={rule}", f"discovery.border_voxels={official}",
            f"discovery.coordinate_frame={'volume' if rule == 'official' else 'body'}",
        ])
        cubes, reference, neighbours, counts = [], [], [], []
        for i, (unit, truth, frame) in enumerate(cohort):
            _, records = sample_cubes(unit, cfg.cubes, np.random.default_rng(i))
            counts.append(len(records))
            if records:
                corners = np.array([r["position"] for r in records])
                cubes += list(truth.box_sums(corners, size) / np.prod(size))
            d = cfg.discovery
            test = ContentTest(unit, d.content_test, size)
            others = [f for j, (_, _, f) in enumerate(cohort) if j != i]
            try:
                coords, corners = sample_coordinates(frame, others, test, args.coordinates, np.random.default_rng(i),
                                                     Borders.from_config(d), d.min_distance, d.max_coordinate_trials)
            except CoordinateError as exc:
                print(f"  {name}: patient {i}: {str(exc)[:120]}")
                continue
            reference += list(truth.box_sums(corners, size) / np.prod(size))
            for j, (_, other_truth, other_frame) in enumerate(cohort):
                if j != i:
                    neighbours += list(other_truth.box_sums(relative_to_corner(coords, other_frame, size), size) / np.prod(size))

        def share(values):
            return f"{np.mean(np.asarray(values) >= 0.5):6.1%} of {len(values):3d}" if len(values) else "   n/a"

        print(f"{name:26s} cubes/scan {counts}  >=50% body: cubes {share(cubes)}, coordinates {share(reference)}"
              f" (in neighbours {share(neighbours)})")


if __name__ == "__main__":
    main()
