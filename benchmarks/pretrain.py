"""Pretraining throughput and data-pipeline memory (prints figures; no assertions).

1. The tiny Models Genesis preset (models_genesis_3d_tiny) on the CPU: steps/s, cubes/s
   and the data-wait fraction (time blocked on the DataLoader / wall time), from the run's
   metrics.jsonl, with 0 and 2 loader workers. Target: data wait < 10 % of step time on CPU.
2. With CUDA: the paper config (full-width U-Net, batch 16, 64x64x32 cubes, bf16 autocast) on
   synthetic cubes. Target: data wait < 5 %.
3. Peak anonymous memory (RssAnon) of a process iterating a DataLoader over cube sets of growing
   size: memory-mapped shards keep it independent of the set size (file pages are page cache).

Whether the loader workers (``train.transforms_on=workers``) keep a GPU busy is measured by
``benchmarks/data_pipeline.py`` (the paper config against a simulated H100/H200 step).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/pretrain.py [--steps 60] [--cubes DIR] [--skip-memory]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(config: str, data: Path, out: Path, steps: int, *overrides: str) -> dict[str, float]:
    from semantic_genesis.config import load_config
    from semantic_genesis.training.logging import read_metrics
    from semantic_genesis.training.trainer import train

    cfg = load_config(config, [f"data={data}", f"out={out}", f"train.max_steps={steps}", "train.progress=false",
                                      "train.tensorboard=false", "train.checkpoint_every=0", "train.log_every=10",
                                      "train.steps_per_epoch=100000", *overrides])
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    records = read_metrics(out, "train")[1:] or read_metrics(out, "train")
    cubes_s = statistics.mean(r["cubes_per_s"] for r in records)
    return {
        "steps_per_s": cubes_s / cfg.train.batch_size,
        "cubes_per_s": cubes_s,
        "data_wait": statistics.mean(r["data_wait"] for r in records),
        "wall_s": wall,
        "batch": cfg.train.batch_size,
    }


def _tiny_cubes(root: Path) -> Path:
    from semantic_genesis.config import load_config
    from semantic_genesis.cubes import generate_cubes
    from semantic_genesis.phantoms import make_ct_patient
    from semantic_genesis.io.volumes import write_volume

    for i in range(4):
        write_volume(make_ct_patient(i, seed=0).volume, root / "ct" / f"p{i}.nii.gz", dtype="int16")
    generate_cubes(load_config("models_genesis_3d_tiny"), root / "ct", root / "cubes", progress=False)
    return root / "cubes"


def _synthetic_store(root: Path, n: int, shape=(64, 64, 32)) -> Path:
    import numpy as np

    from semantic_genesis.io.shards import ShardWriter

    writer = ShardWriter(root, "cubes", (1, *shape), dtype="float16")
    rng = np.random.default_rng(0)
    per = 256
    for k in range(0, n, per):
        m = min(per, n - k)
        writer.add_unit(f"u{k}", rng.random((m, 1, *shape), dtype=np.float32), [{}] * m, split="train")
    writer.add_unit("val", rng.random((8, 1, *shape), dtype=np.float32), [{}] * 8, split="validation")
    writer.finish()
    return root


_MEMORY_PROBE = r"""
import sys, torch
from torch.utils.data import DataLoader
from semantic_genesis.io.shard_dataset import StoreDataset
from semantic_genesis.training.data import collate
def status():
    out = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('RssAnon', 'RssFile'):
            out[k] = int(v.split()[0]) / 1024
    return out
ds = StoreDataset(sys.argv[1], 'train', kind='cubes')
peak = {'RssAnon': 0.0, 'RssFile': 0.0}
for batch in DataLoader(ds, batch_size=16, shuffle=True, collate_fn=collate, num_workers=0):
    for k, v in status().items():
        peak[k] = max(peak[k], v)
print(len(ds), peak['RssAnon'], peak['RssFile'])
"""


def memory_vs_size(tmp: Path, sizes=(256, 1024, 4096)) -> None:
    print("\n[3] data pipeline memory vs cube-set size (32x32x16 float16 cubes, full pass, batch 16)")
    print(f"{'cubes':>7} {'set MiB':>8} {'peak RssAnon MiB':>17} {'peak RssFile MiB':>17}")
    for n in sizes:
        store = _synthetic_store(tmp / f"mem{n}", n, shape=(32, 32, 16))
        size = sum(p.stat().st_size for p in store.glob("shard_*.npy")) / 2**20
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(store)], capture_output=True, text=True, check=True)
        count, anon, file_ = out.stdout.split()
        print(f"{int(count):>7} {size:>8.1f} {float(anon):>17.1f} {float(file_):>17.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per measurement (default 60)")
    parser.add_argument("--cubes", default=None, help="tiny cube set to use (default: made from 4 phantoms)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cubes = Path(args.cubes) if args.cubes else _tiny_cubes(tmp)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
        print("[1] tiny config on CPU (width 0.125, batch 8, 32x32x16 cubes, models_genesis transforms in the step)")
        print(f"{'workers':>8} {'channels_last':>14} {'transforms':>10} {'steps/s':>8} {'cubes/s':>8} {'data wait':>10}")
        for workers, cl, where in ((0, False, "device"), (0, True, "device"), (2, True, "device"), (2, True, "workers")):
            r = _train("models_genesis_3d_tiny", cubes, tmp / f"tiny{workers}{cl}{where}", args.steps,
                       f"train.num_workers={workers}", f"train.channels_last={str(cl).lower()}", "train.device=cpu",
                       f"train.transforms_on={where}")
            print(f"{workers:>8} {str(cl):>14} {where:>10} {r['steps_per_s']:>8.2f} {r['cubes_per_s']:>8.1f} "
                  f"{100 * r['data_wait']:>9.1f}%")
        if torch.cuda.is_available():
            print(f"\n[2] paper config on {torch.cuda.get_device_name()} (width 1.0, batch 16, 64x64x32, bf16)")
            store = _synthetic_store(tmp / "paper", 2048)
            print(f"{'workers':>8} {'transforms':>10} {'steps/s':>8} {'cubes/s':>8} {'data wait':>10}")
            for workers, where in ((4, "device"), (8, "device"), (8, "workers")):
                r = _train("models_genesis_3d", store, tmp / f"paper{workers}{where}", max(args.steps, 100),
                           f"train.num_workers={workers}", "train.amp=bf16", "train.device=cuda",
                           f"train.transforms_on={where}")
                print(f"{workers:>8} {where:>10} {r['steps_per_s']:>8.2f} {r['cubes_per_s']:>8.1f} "
                      f"{100 * r['data_wait']:>9.1f}%")
        else:
            print("\n[2] no CUDA device: paper-config GPU figures skipped")
        if not args.skip_memory:
            memory_vs_size(tmp)


if __name__ == "__main__":
    main()
