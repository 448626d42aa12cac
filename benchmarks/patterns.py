"""Pattern sets: memory of training from a paper-size set, generation throughput, content-test speed.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/patterns.py [--classes 44 --neighbours 200 --resolutions 3]
        [--batches 400 --batch-size 16 --workers 2] [--skip-memory] [--skip-generation] [--skip-content]
        [--skip-generation-2d --gen2d-classes 100 --gen2d-neighbours 125 250 500 1000 --gen2d-memory-mb 2048]

Prints three figures:

1. **Peak memory while reading a paper-size pattern set** (C=44 classes x K=200 neighbours x 3
   resolutions = 26,400 patterns of 64x64x32; the official trainer holds them as float64, ~28 GB).
   A synthetic set is written with :class:`~semantic_genesis.io.shards.ShardWriter` (float16, one
   shard per class, ~6.9 GB) into a temporary folder, then a training DataLoader
   (:class:`~semantic_genesis.io.shard_dataset.StoreDataset` + the engine's shuffled ``EpochSampler``,
   ``--workers`` processes) reads ``--batches`` batches while a sampler thread reads ``/proc`` of the
   main process and its workers. Reported: peak private memory (``RssAnon``, what the process really
   owns; target <= 2 GB) and peak ``VmRSS`` (everything resident, file-backed pages included; shards
   are read with ``pread``, not memory-mapped, so this stays close to the private memory).
2. **Pattern generation throughput**: the discovery pattern writer on phantom patients (64x64x32
   patterns, 3 resolutions), in neighbour scans read and cropped per second and patterns per second.
4. **2D generation memory** (Semantic Genesis 2D, paper size: C=100 classes x K=1000 neighbours x 3
   resolutions of 224x224 patches = 300,000 patches, 15 GB as uint8): the discovery plan and pattern
   writer (``make_plan`` + ``write_pattern_set``, ``discovery.memory_mb``) on a synthetic cohort of
   1024x1024 radiographs streamed from a generator (one image per neighbour read, nothing on disk but
   the pattern set), for several K, with the peak resident memory of the process (``VmRSS``, sampled
   from ``/proc``). Crops are held one chunk of classes at a time, so the peak follows
   ``discovery.memory_mb``, not C x K x resolutions; ``--gen2d-classes`` lowers C to save disk and time
   (the chunks are written one after the other, so the peak does not depend on C once C exceeds one chunk).
3. **Content test**: scoring candidate positions of one reference with the coordinate sampler's
   vectorised test (summed-area tables, table build included) against a straightforward loop that
   evaluates each candidate window with NumPy, and against the official pure-Python loop (timed on
   a few candidates); the decisions are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


# ----------------------------------------------------------------------------------------------
# 1. memory
# ----------------------------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


class MemorySampler(threading.Thread):
    """Polls /proc for the current process and its children; keeps the peaks of the sums."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.is_set():
            total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
            for pid in [me, *_children(me)]:
                status = _proc_status(pid)
                for key in total:
                    total[key] += status.get(key, 0)
            for key in total:
                self.peak[key] = max(self.peak[key], total[key])
            time.sleep(self.interval)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join()
        return self.peak


def write_synthetic_pattern_set(root: Path, classes: int, neighbours: int, resolutions: int,
                                size=(64, 64, 32), val_neighbours: int = 30) -> None:
    """A paper-size pattern set of smooth synthetic cubes (float16), one shard per class."""
    from semantic_genesis.io.shards import ShardWriter

    writer = ShardWriter(root, "patterns", (1, *size), "float16", attrs={"num_classes": classes, "synthetic": True})
    rng = np.random.default_rng(0)
    base = rng.random((8, 1, *size), dtype=np.float32)
    n = neighbours * resolutions
    for label in range(classes):
        items = np.empty((n, 1, *size), np.float16)
        for k in range(n):
            items[k] = base[k % 8] * 0.5 + 0.5 * ((label + k) % 7) / 7
        records = [{"label": label, "patient": f"p{k // resolutions}", "resolution": k % resolutions} for k in range(n)]
        writer.add_unit(f"class_{label:05d}", items, records, split="train")
        val = items[:val_neighbours:resolutions][:val_neighbours]
        writer.add_unit(f"class_{label:05d}_val", val, records[: len(val)], split="validation")
    writer.finish(num_classes=classes)


def bench_memory(args) -> None:
    from torch.utils.data import DataLoader

    from semantic_genesis.io.shard_dataset import StoreDataset
    from semantic_genesis.training.data import EpochSampler, collate

    keep = args.store is not None
    tmp = Path(args.store) if keep else Path(tempfile.mkdtemp(prefix="sg_patterns_bench_", dir=args.tmp))
    try:
        t = time.perf_counter()
        n = args.classes * args.neighbours * args.resolutions
        if not (keep and (tmp / "manifest.json").is_file()):
            write_synthetic_pattern_set(tmp, args.classes, args.neighbours, args.resolutions)
        size_gb = sum(p.stat().st_size for p in tmp.glob("*.npy")) / 1e9
        print(f"[memory] {n} train patterns ({size_gb:.2f} GB float16 on disk), ready in {time.perf_counter() - t:.1f} s")
        dataset = StoreDataset(tmp, "train", kind="patterns", with_labels=True)
        sampler = EpochSampler(len(dataset), args.batch_size, args.batches, seed=0)
        loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=args.workers, persistent_workers=args.workers > 0, drop_last=True)
        sampler_thread = MemorySampler()
        sampler_thread.start()
        t = time.perf_counter()
        seen = 0
        checksum = 0.0
        for batch in loader:
            seen += len(batch["image"])
            checksum += float(batch["image"][:, :, ::8, ::8, ::8].sum())  # touch the data
        elapsed = time.perf_counter() - t
        peak = sampler_thread.stop()
        official = n * 64 * 64 * 32 * 8 / 1e9
        print(f"[memory] read {seen} patterns in {elapsed:.1f} s ({seen / elapsed:.0f} patterns/s, "
              f"{args.workers} workers, batch {args.batch_size}); checksum {checksum:.1f}")
        print(f"[memory] peak private memory (RssAnon, main + workers): {peak['RssAnon'] / 2**30:.2f} GiB "
              f"(target <= 2 GB; the official trainer holds {official:.1f} GB of float64)")
        print(f"[memory] peak VmRSS (all resident memory, main + workers): {peak['VmRSS'] / 2**30:.2f} GiB "
              f"(file-backed {peak['RssFile'] / 2**30:.2f} GiB)")
        del loader
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# 2. generation throughput
# ----------------------------------------------------------------------------------------------
def bench_generation(args) -> None:
    from semantic_genesis.config import DiscoveryConfig, IntensityConfig
    from semantic_genesis.discovery.coordinates import body_frame
    from semantic_genesis.discovery.patterns import write_pattern_set
    from semantic_genesis.discovery.pipeline import UnitCache
    from semantic_genesis.discovery.plan import make_plan
    from semantic_genesis.io.datasets import list_scans
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    tmp = Path(tempfile.mkdtemp(prefix="sg_patgen_bench_", dir=args.tmp))
    try:
        n = args.gen_patients
        write_native_ct_cohort(tmp / "ct", n, seed=0, shape=tuple(args.gen_shape), progress=False)
        refs = list_scans(tmp / "ct")
        ids = [r.patient_id for r in refs]
        paths = {r.patient_id: str(r.path) for r in refs}
        loader = UnitCache(paths, IntensityConfig(modality="ct"), max_bytes=0)  # no caching: every read counts
        frames = {pid: body_frame(loader(pid)) for pid in ids}
        splits = ["validation" if k >= n - 2 else "train" for k in range(n)]
        features = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
        dcfg = DiscoveryConfig(num_neighbours=n - 2, num_val_neighbours=2, num_classes=args.gen_classes,
                               classes_per_reference=args.gen_classes, pattern_size=(64, 64, 32), num_resolutions=3,
                               content_test="body", body_min_fraction=0.6, progress=False)
        groups = make_plan(ids, splits, features, frames, loader, dcfg, 0, log=lambda s: None)
        loader.loads = 0
        t = time.perf_counter()
        write_pattern_set(groups, frames, loader, tmp / "patterns", dcfg, 0, {}, log=lambda s: None)
        elapsed = time.perf_counter() - t
        patterns = args.gen_classes * ((n - 2) * 3 + 2)
        visited = sum(len(g.neighbours) + len(g.val_neighbours) for g in groups)
        print(f"[generation] {visited} neighbour scans {tuple(args.gen_shape)} read + cropped in {elapsed:.1f} s: "
              f"{visited / elapsed:.2f} patients/s, {patterns / elapsed:.0f} patterns/s "
              f"({args.gen_classes} classes x 3 resolutions of 64x64x32, written as float16 shards)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# 4. 2D generation memory (Semantic Genesis 2D, paper size)
# ----------------------------------------------------------------------------------------------
class SyntheticRadiographs:
    """A streamed cohort of ``size x size`` chest-radiograph-like images (bright body, two dark lungs,
    noise), a different position per patient; ``cohort(pid)`` is the one-slice volume
    ``(H, W, 1)`` in [0, 1] and ``frame(pid)`` its body box, known from the generator."""

    def __init__(self, size: int = 1024):
        self.size = size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        r = 0.38  # the template patient, centred; each patient is it shifted (cheap to stream)
        body = ((xx - 0.5) / r) ** 2 + ((yy - 0.5) / (1.1 * r)) ** 2 <= 1.0
        lungs = (((xx - 0.5 + 0.4 * r) / (0.3 * r)) ** 2 + ((yy - 0.5) / (0.7 * r)) ** 2 <= 1.0) | (
            ((xx - 0.5 - 0.4 * r) / (0.3 * r)) ** 2 + ((yy - 0.5) / (0.7 * r)) ** 2 <= 1.0)
        self._template = (0.05 + 0.75 * body - 0.45 * lungs).astype(np.float32)
        self._r = r
        self.loads = 0

    def _shift(self, pid: str) -> tuple[int, int]:
        rng = np.random.default_rng(int(pid.split("_")[-1]))
        return int(rng.integers(-50, 51)), int(rng.integers(-50, 51))

    def __call__(self, pid: str) -> np.ndarray:
        dy, dx = self._shift(pid)
        noise = np.random.default_rng(int(pid.split("_")[-1]) + 1).random((self.size // 16, self.size // 16),
                                                                           dtype=np.float32)
        image = np.roll(self._template, (dy, dx), axis=(0, 1)) + 0.1 * np.repeat(np.repeat(noise, 16, 0), 16, 1)
        self.loads += 1
        return np.clip(image, 0, 1).T[:, :, None]  # (X = column, Y = row, 1): the one-slice grid

    def frame(self, pid: str):
        from semantic_genesis.discovery.coordinates import Frame

        dy, dx = self._shift(pid)
        s, r = self.size, self._r
        x0, y0 = (0.5 - r) * s + dx, (0.5 - 1.1 * r) * s + dy
        return Frame((s, s, 1), (float(np.floor(x0)), float(np.floor(y0)), 0.0), (float(2 * r * s), float(2.2 * r * s), 1.0))


def bench_generation_2d(args) -> None:
    from semantic_genesis.config import DiscoveryConfig
    from semantic_genesis.discovery.patterns import write_pattern_set
    from semantic_genesis.discovery.plan import make_plan

    n_val = 30
    print(f"[2D generation] C={args.gen2d_classes} classes x K neighbours x 3 resolutions of 224x224 (paper: C=100, "
          f"K=1000), synthetic {args.gen2d_image_size}x{args.gen2d_image_size} radiographs, discovery.memory_mb={args.gen2d_memory_mb}, uint8 shards")
    for k in args.gen2d_neighbours:
        tmp = Path(tempfile.mkdtemp(prefix="sg_patgen2d_bench_", dir=args.tmp))
        try:
            cohort = SyntheticRadiographs(args.gen2d_image_size)
            ids = [f"p_{i:05d}" for i in range(k + n_val)]
            splits = ["train"] * k + ["validation"] * n_val
            frames = {pid: cohort.frame(pid) for pid in ids}
            features = np.random.default_rng(0).normal(size=(len(ids), 64)).astype(np.float32)
            dcfg = DiscoveryConfig(
                ae_model="unet2d", ae_input_size=(256, 256), num_neighbours=k, num_val_neighbours=n_val,
                num_classes=args.gen2d_classes, classes_per_reference=args.gen2d_classes, pattern_size=(224, 224),
                num_resolutions=3, multires_size_range=(175, 276), multires_jitter=35, min_distance=16,
                border_fraction=(0.05, 0.05, 0.0), content_test="body", body_min_fraction=0.5, dtype="uint8",
                memory_mb=args.gen2d_memory_mb, progress=False)
            groups = make_plan(ids, splits, features, frames, cohort, dcfg, 0, log=lambda s: None)
            cohort.loads = 0
            sampler = MemorySampler(0.02)
            before = _proc_status(os.getpid()).get("VmRSS", 0)
            sampler.start()
            t, cpu = time.perf_counter(), time.process_time()
            write_pattern_set(groups, frames, cohort, tmp / "patterns", dcfg, 0, {}, log=lambda s: None)
            elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
            peak = sampler.stop()
            patches = args.gen2d_classes * (k * 3 + n_val)
            disk = sum(p.stat().st_size for p in (tmp / "patterns").glob("*.npy")) / 1e9
            print(f"[2D generation] K={k:5d}: {patches:7d} patches ({disk:.2f} GB on disk) in {elapsed:.0f} s ({cpu:.0f} s CPU), "
                  f"{cohort.loads} image reads; peak VmRSS {peak['VmRSS'] / 2**30:.2f} GiB "
                  f"(before: {before / 2**30:.2f} GiB; all crops at once would be {patches * 224 * 224 * 2 / 2**30:.1f} GiB "
                  f"float16)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# 3. content test
# ----------------------------------------------------------------------------------------------
def loop_lung(unit, corners, size, threshold=0.425, look_ahead=3, max_score=0.15) -> np.ndarray:
    """Straightforward: one NumPy evaluation of the official rule per candidate window."""
    out = []
    sx, sy, sz = size
    for x, y, z in corners:
        win = unit[x : x + sx, y : y + sy, z : z + sz + look_ahead - 1]
        pad = sz + look_ahead - 1 - win.shape[2]
        if pad:
            win = np.concatenate([win, np.zeros((sx, sy, pad), win.dtype)], axis=2)
        k = np.full((sx, sy, sz), look_ahead - 1)
        for off in range(look_ahead - 2, -1, -1):  # first offset with tissue wins
            k = np.where(win[:, :, off : off + sz] >= threshold, off, k)
        out.append((1.0 - k / (look_ahead - 1)).mean() <= max_score)
    return np.asarray(out)


def official_python_loop(unit, corner, size, threshold=0.425, look_ahead=3) -> float:
    """The official generator's pure-Python quadruple loop (``self_discovery/pattern_generator_3D.py``), for one window."""
    x0, y0, z0 = corner
    sx, sy, sz = size
    total = 0.0
    for d in range(sz):
        for i in range(sx):
            for j in range(sy):
                k = look_ahead - 1
                for off in range(look_ahead - 1):
                    zz = z0 + d + off
                    if zz < unit.shape[2] and unit[x0 + i, y0 + j, zz] >= threshold:
                        k = off
                        break
                total += 1.0 - k / (look_ahead - 1)
    return total / (sx * sy * sz)


def bench_content(args) -> None:
    from semantic_genesis.discovery.coordinates import ContentTest
    from semantic_genesis.phantoms.ct import make_ct_patient
    from semantic_genesis.preprocess import ct_to_unit

    unit = np.asarray(ct_to_unit(make_ct_patient(0, 0, tuple(args.content_shape)).volume.array), np.float32)
    size = (64, 64, 32)
    rng = np.random.default_rng(0)
    hi = np.asarray(unit.shape) - np.asarray(size)
    corners = rng.integers(0, hi + 1, size=(args.candidates, 3))
    t = time.perf_counter()
    test = ContentTest(unit, "lung", size)
    t_build = time.perf_counter() - t
    fast = test(corners)
    t_fast = time.perf_counter() - t
    t_score = t_fast - t_build
    t = time.perf_counter()
    slow = loop_lung(unit, corners, size)
    t_loop = time.perf_counter() - t
    assert np.array_equal(fast, slow), "vectorised and looped lung tests disagree"
    few = corners[: args.python_candidates]
    t = time.perf_counter()
    scores = [official_python_loop(unit, c, size) for c in few]
    t_py = (time.perf_counter() - t) / len(few)
    assert np.array_equal(np.asarray(scores) <= 0.15, fast[: len(few)])
    per_fast = t_fast / len(corners)
    print(f"[content] lung test, {len(corners)} candidates of 64x64x32 in a {tuple(unit.shape)} scan "
          f"({int(fast.sum())} accepted, identical decisions):")
    print(f"[content]   vectorised: {t_fast * 1e3:.1f} ms in all = table build {t_build * 1e3:.1f} ms (once per "
          f"reference) + {t_score / len(corners) * 1e6:.2f} us/candidate")
    print(f"[content]   straightforward NumPy loop: {t_loop * 1e3:.1f} ms -> {t_loop / t_fast:.0f}x slower in all, "
          f"{t_loop / max(t_score, 1e-9):.0f}x slower per candidate once the table exists")
    print(f"[content]   official pure-Python loop: {t_py * 1e3:.0f} ms/candidate -> {t_py / per_fast:.0f}x slower")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=44)
    parser.add_argument("--neighbours", type=int, default=200)
    parser.add_argument("--resolutions", type=int, default=3)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gen-patients", type=int, default=12)
    parser.add_argument("--gen-classes", type=int, default=8)
    parser.add_argument("--gen-shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--content-shape", type=int, nargs=3, default=[256, 256, 160])
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--python-candidates", type=int, default=2)
    parser.add_argument("--tmp", default=None, help="folder for the temporary sets (default: system temp)")
    parser.add_argument("--store", default=None, help="keep (or reuse) the synthetic pattern set in this folder")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-content", action="store_true")
    parser.add_argument("--skip-generation-2d", action="store_true")
    parser.add_argument("--gen2d-classes", type=int, default=100)
    parser.add_argument("--gen2d-neighbours", type=int, nargs="+", default=[125, 250, 500, 1000])
    parser.add_argument("--gen2d-memory-mb", type=int, default=2048)
    parser.add_argument("--gen2d-image-size", type=int, default=1024, help="side of the synthetic radiographs")
    args = parser.parse_args(argv)
    if not args.skip_content:
        bench_content(args)
    if not args.skip_generation:
        bench_generation(args)
    if not args.skip_memory:
        bench_memory(args)
    if not args.skip_generation_2d:
        bench_generation_2d(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
