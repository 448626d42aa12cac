"""Generation speed of the phantom radiograph cohort (256 x 256 radiographs projected from CT phantoms).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/xray_cohort.py                      # 24 patients, 1 and 2 workers
    OMP_NUM_THREADS=1 python benchmarks/xray_cohort.py --patients 200 --layout chexpert

Prints, on one core (median over ``--repeats`` after a warm-up, wall and CPU seconds):

1. the radiograph alone (from an existing 128 x 128 x 96 CT): no finding, a typical patient
   (findings drawn at the default rate) and all 15 findings, with the projection grouping planes
   of similar magnification (default) and, as the baseline in the same run, one resampling per
   plane (``tolerance=0``, the geometry the projection had before);
2. the whole cohort: ``--patients`` patients (CT phantom + findings + radiograph + files) exported
   in ``--layout`` with 1 and ``--workers`` processes, as phantoms per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from unittest import mock


def _time(fn, repeats: int) -> tuple[float, float]:
    fn(0)
    wall, cpu = [], []
    for i in range(1, repeats + 1):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--layout", default="chestxray14")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from semantic_genesis.phantoms import xray
    from semantic_genesis.phantoms.ct import make_ct_patient
    from semantic_genesis.phantoms.export import export_xray_cohort

    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpu_count={os.cpu_count()}")
    ct = make_ct_patient(0, args.seed)
    typical = [xray.draw_xray_spec(i, args.seed) for i in range(args.repeats + 1)]
    cases = {
        "no finding": lambda i: xray.make_radiograph(ct, (), sex="M"),
        "typical patient": lambda i: xray.make_radiograph(ct, typical[i].findings, view=typical[i].view, sex=typical[i].sex),
        "all 15 findings": lambda i: xray.make_radiograph(ct, xray.FINDINGS, sex="F"),
    }
    exact = xray.project

    def per_plane(values, spacing, view="PA", scale=1.0, tolerance=0.01):
        return exact(values, spacing, view, scale, tolerance=0.0)

    print(f"radiograph 256x256 from an existing CT (median of {args.repeats}, seconds per image, wall / CPU)")
    for name, fn in cases.items():
        wall, cpu = _time(fn, args.repeats)
        with mock.patch.object(xray, "project", per_plane):
            wall0, cpu0 = _time(fn, args.repeats)
        print(f"  {name:16s} grouped planes {wall:.3f} / {cpu:.3f}   one per plane {wall0:.3f} / {cpu0:.3f}   "
              f"speed-up {cpu0 / cpu:.2f}x (CPU)")

    for workers in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as tmp:
            t, c = time.perf_counter(), time.process_time()
            export_xray_cohort(tmp, args.patients, seed=args.seed, layout=args.layout, workers=workers)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"{args.layout} cohort, {args.patients} patients 256x256, {workers} worker(s): {wall:.1f} s wall "
              f"= {args.patients / wall:.2f} phantoms/s" + (f" (parent CPU {cpu:.1f} s)" if workers == 1 else ""))


if __name__ == "__main__":
    main()
