"""Generation speed of the phantom cohorts.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/phantoms.py                  # per-patient times + 24-patient cohort
    OMP_NUM_THREADS=1 python benchmarks/phantoms.py --patients 8 --workers 2 --repeats 3

Prints seconds per patient on one core (median over ``--repeats`` patients after one warm-up) for a
128 x 128 x 96 chest CT, a 96 x 96 x 64 brain MRI (four sequences) and a 256 x 256 radiograph
(projection only, from an existing CT), then the wall time of a ``--patients`` chest CT cohort with
``--workers`` processes. Targets (issue 3): about 1 s per CT patient on one core; a 24-patient cohort
in under a minute on 2 cores. ``--write DIR`` also times writing the native layout (NIfTI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (process) seconds per call; CPU time is robust to a busy machine."""
    fn(0)  # warm-up (imports, caches)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="also time writing the native CT layout")
    args = parser.parse_args()

    from semantic_genesis.phantoms import make_ct_cohort, make_ct_patient, make_mri_patient, make_radiograph

    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpu_count={os.cpu_count()}")
    print(f"(median of {args.repeats}; wall and CPU seconds, 1 thread)")
    wall, cpu = _time(lambda i: make_ct_patient(i, args.seed), args.repeats)
    print(f"chest CT 128x128x96:        {wall:.3f} s wall, {cpu:.3f} s CPU / patient")
    wall, cpu = _time(lambda i: make_mri_patient(i, args.seed), args.repeats)
    print(f"brain MRI 96x96x64 x4 seq:  {wall:.3f} s wall, {cpu:.3f} s CPU / patient")
    ct = make_ct_patient(0, args.seed)
    wall, cpu = _time(lambda i: make_radiograph(ct, ("Effusion",) if i % 2 else ()), args.repeats)
    print(f"radiograph 256x256:         {wall:.3f} s wall, {cpu:.3f} s CPU / image (from an existing CT)")

    t = time.perf_counter()
    cohort = make_ct_cohort(args.patients, args.seed, workers=args.workers)
    wall = time.perf_counter() - t
    nodules = sum(len(p.nodules) for p in cohort)
    print(f"chest CT cohort: {args.patients} patients, {args.workers} workers: {wall:.1f} s ({nodules} nodules)")
    if args.write:
        from semantic_genesis.phantoms.cohort import write_native_ct_cohort

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            write_native_ct_cohort(tmp, args.patients, args.seed, workers=args.workers, progress=False)
            print(f"native CT layout written: {args.patients} patients, {args.workers} workers: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
