"""Prepared GPU check: transform throughput, pretraining and fine-tuning steps, data wait (< 8 min on one GPU).

Usage::

    python benchmarks/gpu_check.py                  # CUDA when available, else the tiny CPU version
    python benchmarks/gpu_check.py --device cpu     # tiny sizes, the same printout (run by the test suite)
    benchmarks/gpu_check                            # the same, output also saved to gpu_check.txt

Prints, on one device:

1. the environment (torch, device, memory);
2. transform throughput of the ``models_genesis`` and ``semantic_genesis`` presets on the device, on
   batches of 32 cubes of 64x64x32 and of 32 images of 224x224 (goal: >= 20,000 cubes/s for
   models_genesis at 64x64x32 on a GPU), of each stage alone, and of the two presets on the device
   path (random draws on the device, the default on a GPU) against the old torch path (parameters
   drawn on the CPU) with the aten operations and host waits per call;
3. the paper-size pretraining step (Models Genesis: the 3D U-Net; Semantic Genesis: the Y-Net with
   44 classes; batch 16 of 64x64x32, Adam, the methods' losses) in fp32, in bf16 autocast and in bf16
   + ``torch.compile`` + channels-last: milliseconds per step and peak device memory;
4. fine-tuning steps of the paper's target-task networks (a segmentation U-Net with a Dice + BCE loss
   and an encoder classifier with BCE, batch 16 of 64x64x32, bf16 on a GPU);
5. the data-wait fraction of real pretraining runs (``training.train`` with the paper config on a
   synthetic cube set) with the transforms in the training step (``train.transforms_on=device``) and
   in the loader workers (``=workers``).

Each measurement is guarded: a failure prints one ``ERROR`` line and the check goes on; the exit status
is the number of failed measurements. On a CPU every size is tiny (width 0.125, 16x16x8 cubes, a few
steps) and ``torch.compile`` is skipped (``--compile`` forces it), so that the test suite runs the whole
script in seconds and the printout keeps its shape. The script uses only public interfaces
(``transforms.build_preset``, ``models.create``, ``config.load_config``, ``training`` ``train``), so it
keeps working when the engine changes inside.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """Every size the check uses; ``paper()`` on a GPU, ``tiny()`` on a CPU."""

    cube: tuple[int, int, int]
    image: tuple[int, int]
    transform_batch: int
    transform_calls: int
    width: float
    step_batch: int
    warmup_steps: int
    timed_steps: int
    classes: int
    train_steps: int
    config: str
    workers: int

    @staticmethod
    def paper() -> Sizes:
        return Sizes((64, 64, 32), (224, 224), 32, 20, 1.0, 16, 5, 20, 44, 100, "models_genesis_3d",
                     min(8, os.cpu_count() or 1))

    @staticmethod
    def tiny() -> Sizes:
        return Sizes((16, 16, 8), (32, 32), 4, 2, 0.125, 2, 1, 2, 4, 6, "models_genesis_3d_tiny", 1)


class Check:
    """Runs guarded measurements and counts failures."""

    def __init__(self):
        self.failures = 0

    @contextlib.contextmanager
    def guard(self, what: str):
        try:
            yield
        except Exception as exc:  # one failing measurement must not hide the others
            self.failures += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(f"  ERROR {what}: {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})",
                  flush=True)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device) -> str:
    import torch

    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}"


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def environment(device, sizes: Sizes) -> None:
    import torch

    print("[1] environment")
    print(f"  torch {torch.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"sizes: {'paper' if sizes.width == 1.0 else 'tiny'}")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"  {props.name}, compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
              f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}, CUDA {torch.version.cuda}")
    else:
        print("  device: cpu")


#: Single-stage presets (the stage on every sample): where the preset's time goes.
STAGES = ("local_shuffle", "nonlinear", "inpaint", "outpaint")


def transforms(check: Check, device, sizes: Sizes) -> None:
    import torch

    from semantic_genesis.transforms import build_preset

    print(f"[2] transform presets on {device.type}: samples/s (batch {sizes.transform_batch}, "
          f"{sizes.transform_calls} calls; goal on a GPU: models_genesis 3D >= 20,000)")
    for label, shape in (("3D", sizes.cube), ("2D", sizes.image)):
        for name in ("models_genesis", "semantic_genesis", *STAGES):
            with check.guard(f"transforms {name} {label}"):
                preset = build_preset(name, spatial_dims=len(shape))
                x = torch.rand((sizes.transform_batch, 1) + tuple(shape), device=device)
                generator = torch.Generator().manual_seed(0)
                for _ in range(2):
                    preset(x, generator)
                _sync(device)
                start = time.perf_counter()
                for _ in range(sizes.transform_calls):
                    inputs, targets = preset(x, generator)
                _sync(device)
                rate = sizes.transform_batch * sizes.transform_calls / (time.perf_counter() - start)
                stage = " (this stage on every sample)" if name in STAGES else ""
                print(f"  {label} {'x'.join(map(str, shape)):>9} {name:>17}: {rate:10.0f} samples/s{stage}", flush=True)
    print("  the device path (random draws on the device; the default on a GPU) against the old torch path "
          "(parameters drawn on the CPU), per call: rate, aten operations, host waits")
    for label, shape in (("3D", sizes.cube), ("2D", sizes.image)):
        for name in ("models_genesis", "semantic_genesis"):
            with check.guard(f"device path against the torch path {name} {label}"):
                x = torch.rand((sizes.transform_batch, 1) + tuple(shape), device=device)
                new = _path_figures(build_preset(name, spatial_dims=len(shape)), x, "device", sizes.transform_calls)
                old = _path_figures(build_preset(name, spatial_dims=len(shape)), x, "torch",
                                    max(1, sizes.transform_calls // 5))
                print(f"  {label} {name:>17}: device path {new[0]:9.0f}/s, {new[1]:5d} ops, {new[2]:3d} waits | "
                      f"torch path {old[0]:9.0f}/s, {old[1]:5d} ops, {old[2]:3d} waits | {new[0] / old[0]:6.1f}x",
                      flush=True)


#: aten operations that make the host wait for a GPU (a value or a data-dependent shape on the host).
SYNCING = {"nonzero", "_local_scalar_dense", "is_nonzero", "item", "masked_select", "unique", "repeat_interleave"}


def _path_figures(preset, x, backend: str, calls: int) -> tuple[float, int, int]:
    """``(samples/s, aten operations per call, host waits per call)`` of ``preset`` on ``x`` with the
    transforms ``backend`` forced (``"device"`` or ``"torch"``)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from semantic_genesis.transforms import use_backend

    class Count(TorchDispatchMode):
        ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    generator = torch.Generator().manual_seed(0)
    with use_backend(backend):
        preset(x, generator)
        counter = Count()
        counter.ops = []
        with counter:
            preset(x, generator)
        _sync(x.device)
        start = time.perf_counter()
        for _ in range(calls):
            preset(x, generator)
        _sync(x.device)
    rate = x.shape[0] * calls / (time.perf_counter() - start)
    return rate, len(counter.ops), sum(op in SYNCING for op in counter.ops)


def _step_model(name: str, sizes: Sizes):
    """Network and loss of a paper pretraining step (``models.create``)."""
    import torch
    import torch.nn.functional as F

    from semantic_genesis import models

    if name == "models_genesis":
        model = models.create("unet3d", width=sizes.width)

        def loss_fn(out, target, labels):
            return F.mse_loss(out.float(), target)
    else:
        model = models.create("ynet3d", width=sizes.width, num_classes=sizes.classes)

        def loss_fn(out, target, labels):
            return F.mse_loss(out.restoration.float(), target) + 0.01 * F.cross_entropy(out.logits.float(), labels)
    return model, loss_fn


def _time_steps(model, loss_fn, batch, device, amp: bool, warmup: int, timed: int, classify_labels) -> float:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, target = batch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss_fn(out, target, classify_labels).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(timed):
        step()
    _sync(device)
    return 1e3 * (time.perf_counter() - start) / timed


def pretraining_steps(check: Check, device, sizes: Sizes, compile_models: bool) -> None:
    import torch

    print(f"[3] pretraining step, batch {sizes.step_batch} x {'x'.join(map(str, sizes.cube))}, width {sizes.width}: "
          "ms/step and peak device memory (MiB)")
    modes = [("fp32", False, False), ("bf16", True, False), ("bf16+compile+channels_last", True, True)]
    for name in ("models_genesis", "semantic_genesis"):
        for mode, amp, fast in modes:
            with check.guard(f"step {name} {mode}"):
                if fast and not compile_models:
                    print(f"  {name:>17} {mode:>27}: skipped (torch.compile on a CPU; --compile forces it)")
                    continue
                _reset_peak(device)
                torch.manual_seed(0)
                model, loss_fn = _step_model(name, sizes)
                model = model.to(device)
                x = torch.rand((sizes.step_batch, 1) + sizes.cube, device=device)
                target = torch.rand_like(x)
                labels = torch.randint(0, sizes.classes, (sizes.step_batch,), device=device)
                if fast:
                    model = model.to(memory_format=torch.channels_last_3d)
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                    model = torch.compile(model)
                ms = _time_steps(model, loss_fn, (x, target), device, amp, sizes.warmup_steps + (3 if fast else 0),
                                 sizes.timed_steps, labels)
                print(f"  {name:>17} {mode:>27}: {ms:8.1f} ms/step, peak {_peak_mib(device):>6} MiB "
                      f"({1e3 * sizes.step_batch / ms:.0f} cubes/s)", flush=True)
                del model, x, target


def finetuning_steps(check: Check, device, sizes: Sizes) -> None:
    import torch
    import torch.nn.functional as F

    from semantic_genesis import models

    amp = device.type == "cuda"
    print(f"[4] fine-tuning step, batch {sizes.step_batch} x {'x'.join(map(str, sizes.cube))}"
          f"{', bf16' if amp else ''}: ms/step and peak device memory (MiB)")

    def dice_bce(out, target, labels):
        out = out.float()
        dice = 1 - (2 * (out * target).sum() + 1) / (out.sum() + target.sum() + 1)
        return dice + F.binary_cross_entropy(out, target)

    def bce_logits(out, target, labels):
        return F.binary_cross_entropy_with_logits(out.float().view(-1), labels.float())

    tasks = (
        ("segmentation (NCS/LCS/BMS-like)", lambda: models.create("unet3d", width=sizes.width), dice_bce),
        ("classification (NCC-like)", lambda: models.create("encoder_classifier3d", width=sizes.width, num_classes=1),
         bce_logits),
    )
    for label, make, loss_fn in tasks:
        with check.guard(f"finetune {label}"):
            _reset_peak(device)
            torch.manual_seed(0)
            model = make().to(device)
            x = torch.rand((sizes.step_batch, 1) + sizes.cube, device=device)
            target = (torch.rand_like(x) > 0.9).float()
            labels = torch.randint(0, 2, (sizes.step_batch,), device=device)
            ms = _time_steps(model, loss_fn, (x, target), device, amp, sizes.warmup_steps, sizes.timed_steps, labels)
            print(f"  {label:>33}: {ms:8.1f} ms/step, peak {_peak_mib(device):>6} MiB", flush=True)


def _synthetic_cubes(root: Path, count: int, shape: tuple[int, int, int]) -> Path:
    import numpy as np

    from semantic_genesis.io.shards import ShardWriter

    writer = ShardWriter(root, "cubes", (1, *shape), dtype="float16")
    rng = np.random.default_rng(0)
    for start in range(0, count, 256):
        n = min(256, count - start)
        writer.add_unit(f"u{start}", rng.random((n, 1, *shape), dtype=np.float32), [{}] * n)
    writer.finish()
    return root


def data_wait(check: Check, device, sizes: Sizes) -> None:
    from semantic_genesis.config import load_config
    from semantic_genesis.training.logging import read_metrics
    from semantic_genesis.training.trainer import train

    amp = "bf16" if device.type == "cuda" else "none"
    print(f"[5] pretraining runs ({sizes.config}, {sizes.train_steps} steps, {sizes.workers} loader workers, amp "
          f"{amp}): data wait = share of wall time blocked on the loader")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with check.guard("data wait: synthetic cube set"):
            store = _synthetic_cubes(tmp / "cubes", max(64, 4 * sizes.step_batch * 4), sizes.cube)
        with check.guard("data wait: compiling the CPU kernels once (the workers load them from the cache)"):
            import torch

            from semantic_genesis.transforms import build_preset

            build_preset("models_genesis")(torch.rand((2, 1) + sizes.cube), torch.Generator().manual_seed(0))
        for where in ("device", "workers"):
            with check.guard(f"data wait transforms_on={where}"):
                out = tmp / f"run_{where}"
                cfg = load_config(sizes.config, [
                    f"data={store}", f"out={out}", f"train.device={device.type}", f"train.transforms_on={where}",
                    f"train.num_workers={sizes.workers}", f"train.max_steps={sizes.train_steps}",
                    "train.steps_per_epoch=100000", f"train.log_every={max(2, sizes.train_steps // 5)}",
                    "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false", f"train.amp={amp}",
                    f"train.batch_size={sizes.step_batch}",
                ])
                train(cfg)
                records = read_metrics(out, "train")
                steady = records[1:] or records  # the first window starts the workers
                wait = statistics.median(r["data_wait"] for r in steady)
                rate = statistics.median(r["cubes_per_s"] for r in steady)
                print(f"  transforms_on={where:>7}: data wait {100 * wait:5.1f} %, {rate:8.1f} cubes/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes also on a GPU (a smoke test)")
    parser.add_argument("--compile", action="store_true", help="also run torch.compile on a CPU")
    parser.add_argument("--sections", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    args = parser.parse_args(argv)

    import torch

    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    sizes = Sizes.tiny() if args.tiny or device.type != "cuda" else Sizes.paper()
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP waits on a shared machine
    compile_models = device.type == "cuda" or args.compile
    check = Check()
    start = time.perf_counter()
    sections = {
        1: lambda: environment(device, sizes),
        2: lambda: transforms(check, device, sizes),
        3: lambda: pretraining_steps(check, device, sizes, compile_models),
        4: lambda: finetuning_steps(check, device, sizes),
        5: lambda: data_wait(check, device, sizes),
    }
    for number in args.sections:
        began = time.perf_counter()
        with check.guard(f"section {number}"):
            sections[number]()
        print(f"  ({time.perf_counter() - began:.0f} s)", flush=True)
    print(f"done in {time.perf_counter() - start:.0f} s, {check.failures} failed measurement(s)")
    return check.failures


if __name__ == "__main__":
    sys.exit(main())
