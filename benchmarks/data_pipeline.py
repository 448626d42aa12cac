"""Does the data pipeline keep a GPU busy? Loader workers making Models Genesis pairs against a simulated GPU step.

Usage::

    python benchmarks/data_pipeline.py                     # workers 1 and all cores, 60 steps each
    python benchmarks/data_pipeline.py --workers 1 2 4 --steps 120 --mfu 0.4

Target (issue 20): with ``train.transforms_on=workers`` the paper-config pretraining waits for data less
than 5 % of the time when the model step takes what it takes on a GPU.

The GPU step is simulated on the CPU, so that the measurement runs anywhere: the paper network
(the ``models_genesis_3d`` preset: the official 3D U-Net, 19.1 M parameters, batch 16 of 64x64x32)
is replaced by a module that sleeps for the estimated H100/H200 step time and then applies a
one-parameter map (so the loss still has a gradient and the optimiser still steps). Everything else is
the real engine (``training.train`` with the paper config): the store reader, the loader workers that
run the ``models_genesis`` preset with the compiled CPU kernels, the transfer of the pairs to the main
process, the loss, the optimiser, the logging. The engine logs ``data_wait``, the fraction of wall time
the loop spent blocked on the loader.

Step time estimate: torch's FLOP counter gives the forward and backward FLOPs of the paper network on
one batch (about 11.7 TFLOP for batch 16). An H100 SXM (and an H200, the same GH100 compute) peaks at
989 dense bf16 TFLOP/s; 3D convolutions with 32-512 channels reach a fraction of it (``--mfu``, default
0.5, deliberately optimistic: a faster GPU step is harder for the loader to keep up with), so the step
takes ``FLOPs / (989e12 * mfu)``, about 24 ms. ``--step-ms`` replaces the estimate with a measured time
(``benchmarks/gpu_check.py`` prints one).

The loader's throughput is also measured alone (no step at all), as pairs per second and per worker, to
size ``train.num_workers`` for a machine: a loader keeps the GPU busy when
``workers * pairs_per_worker > batch / step_time`` with some margin.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
H100_BF16_DENSE_FLOPS = 989e12  # H100 SXM5 and H200 (same GH100 tensor cores), dense bf16


def step_flops(batch: int) -> float:
    """Forward + backward FLOPs of the paper network on one batch (torch's FLOP counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from semantic_genesis.config import load_config
    from semantic_genesis.models import create_from_config

    model = create_from_config(load_config("models_genesis_3d").model).to("meta")
    x = torch.rand(batch, 1, 64, 64, 32, device="meta")  # shapes only: counted, not computed
    with FlopCounterMode(display=False) as counter:
        model(x).float().mean().backward()
    return float(counter.get_total_flops())


def synthetic_cubes(root: Path, n: int) -> Path:
    """A cube set of ``n`` random float16 64x64x32 cubes (training split only)."""
    import numpy as np

    from semantic_genesis.io.shards import ShardWriter

    writer = ShardWriter(root, "cubes", (1, 64, 64, 32), dtype="float16")
    rng = np.random.default_rng(0)
    for start in range(0, n, 256):
        count = min(256, n - start)
        writer.add_unit(f"u{start}", rng.random((count, 1, 64, 64, 32), dtype=np.float32), [{}] * count)
    writer.finish()
    return root


def simulated_method(cfg, seconds: float):
    """The ``models_genesis`` method whose network and loss are replaced by a ``seconds``-long simulated
    GPU step: on a GPU machine the forward, loss and backward run on the GPU while the CPU waits, so
    here they are a sleep plus a loss on one voxel per pair (the pairs still come from the workers)."""
    import torch
    from torch import nn

    from semantic_genesis.methods.base import StepOutput
    from semantic_genesis.methods.models_genesis import ModelsGenesis

    class SimulatedGPUStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if seconds > 0:
                time.sleep(seconds)
            corner = (slice(None), slice(None)) + (0,) * (inputs.dim() - 2)
            return ((inputs[corner] * self.weight - targets[corner]) ** 2).mean()

    class SimulatedModelsGenesis(ModelsGenesis):
        def build_model(self) -> nn.Module:
            return SimulatedGPUStep()

        def training_step(self, model, batch, ctx) -> StepOutput:
            pair = self.prepared(batch, ctx)
            return StepOutput(model(pair["input"], pair["target"]))

    return SimulatedModelsGenesis(cfg)


def run(store: Path, out: Path, workers: int, steps: int, seconds: float) -> dict[str, float]:
    """Train the paper config with the simulated step; data wait and throughput after the first window."""
    from semantic_genesis.config import load_config
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.training.trainer import train
    from semantic_genesis.training.logging import read_metrics

    cfg = load_config("models_genesis_3d", [
        f"data={store}", f"out={out}", "train.device=cpu", "train.transforms_on=workers",
        f"train.num_workers={workers}", f"train.max_steps={steps}", "train.steps_per_epoch=100000",
        "train.log_every=10", "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false",
    ])
    start = time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        train(cfg, simulated_method(cfg, seconds))
    except ConfigError as exc:  # writing the final weights: the simulated step is no registered network
        if "not a registered" not in str(exc):
            raise
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped when training ended
    worker_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    records = read_metrics(out, "train")[1:]  # the first window includes starting the workers
    return {
        "data_wait": statistics.median(r["data_wait"] for r in records),
        "worst_wait": max(r["data_wait"] for r in records),
        "pairs_per_s": statistics.median(r["cubes_per_s"] for r in records),
        "worker_ms_per_pair": 1e3 * worker_cpu / (steps * 16),
        "wall": wall,
    }


def worker_breakdown(store: Path, batches: int = 12) -> dict[str, float]:
    """CPU ms per pair of what a loader worker does, measured in this process: read and stack a batch
    (the method's training dataset), make the pairs (the preset), hand the batch over (DataLoader
    workers move every returned tensor to new shared memory: ``image``, ``input`` and ``target``)."""
    import torch

    from semantic_genesis.config import load_config
    from semantic_genesis.methods import build

    cfg = load_config("models_genesis_3d", [f"data={store}"])
    method = build(cfg)
    train_set, _ = method.build_datasets()
    generator = torch.Generator().manual_seed(0)
    spent = {"read": 0.0, "transform": 0.0, "hand over": 0.0}
    for i in range(batches + 1):
        start = time.process_time()
        image = torch.stack([train_set[(i * 16 + k) % len(train_set)]["image"] for k in range(16)])
        read = time.process_time()
        pair = method.prepare_batch({"image": image}, generator)
        made = time.process_time()
        for tensor in (image, pair["input"], pair["target"]):
            tensor.share_memory_()
        if i:  # the first batch loads the compiled kernels
            spent["read"] += read - start
            spent["transform"] += made - read
            spent["hand over"] += time.process_time() - made
    return {key: 1e3 * value / (batches * 16) for key, value in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="loader workers (default: 1 and all cores)")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per run (logged every 10)")
    parser.add_argument("--mfu", type=float, default=0.5, help="fraction of the GPU's bf16 peak the step reaches")
    parser.add_argument("--step-ms", type=float, default=None, help="simulated step time (default: the estimate)")
    parser.add_argument("--cubes", type=int, default=1024, help="cubes in the synthetic store")
    args = parser.parse_args(argv)

    import torch

    batch = 16
    flops = step_flops(batch)
    estimate = flops / (H100_BF16_DENSE_FLOPS * args.mfu)
    seconds = args.step_ms / 1e3 if args.step_ms is not None else estimate
    need = batch / seconds
    print(f"paper UNet3D, batch {batch} x 1 x 64x64x32: {flops / 1e12:.2f} TFLOP per step (forward + backward)")
    print(f"H100/H200 at {args.mfu:.0%} of {H100_BF16_DENSE_FLOPS / 1e12:.0f} bf16 TFLOP/s: {estimate * 1e3:.1f} ms "
          f"per step; simulated step {seconds * 1e3:.1f} ms -> the GPU consumes {need:.0f} pairs/s")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible (workers and the main process share them)")
    worker_counts = args.workers or sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = synthetic_cubes(tmp / "cubes", args.cubes)
        print(f"{'workers':>8} {'step ms':>8} {'pairs/s':>9} {'data wait':>10} {'worst window':>13} "
              f"{'worker CPU ms/pair':>19}")
        costs = []
        for workers in worker_counts:
            for step in (0.0, seconds):
                r = run(store, tmp / f"run_{workers}_{step}", workers, args.steps, step)
                costs.append(r["worker_ms_per_pair"])
                print(f"{workers:>8} {step * 1e3:>8.1f} {r['pairs_per_s']:>9.1f} {100 * r['data_wait']:>9.1f}% "
                      f"{100 * r['worst_wait']:>12.1f}% {r['worker_ms_per_pair']:>19.2f}", flush=True)
        cost = statistics.median(costs) / 1e3
        parts = worker_breakdown(store)
        print("worker CPU per pair, measured in one process: " + ", ".join(f"{k} {v:.2f} ms" for k, v in parts.items()))
        print("step 0: the loader alone (its throughput); target: data wait < 5 % at the simulated step")
        print(f"worker CPU per pair (read, transform, hand over): {cost * 1e3:.2f} ms -> feeding {need:.0f} pairs/s "
              f"takes {need * cost:.2f} cores of this machine, i.e. train.num_workers >= "
              f"{math.ceil(need * cost / 0.95)} with cores to spare for the main process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
