"""Shared helpers of the training-engine tests: a tiny cube store and tiny methods.

``NoiseRestore`` denoises cubes (additive Gaussian noise drawn from ``ctx.generator``); it exercises
the whole engine without depending on the transform presets. ``method.options.nan_at_step`` makes
its loss NaN from that step on (NaN-guard test); ``method.options.freeze_decoder_epochs`` freezes the
decoder in the first epochs (frozen-parameter hook test); ``method.options.poison_at_step`` sets the
first batch-norm ``running_var`` to inf after that step (a diverged buffer the loss does not see);
``method.options.freeze_bottleneck`` freezes the bottleneck block ``down_tr512`` (torch 2.13's CPU bf16
weight gradient of the 3D convolutions at a 2x2x1 bottleneck is occasionally NaN, which a test cannot
build on); ``method.options.step_delay`` sleeps that many seconds in every training step (signal tests).

``EmaTeacher`` is the PEAC / Ark pattern in miniature: a student denoiser plus a teacher that is the
exponential moving average of the student (momentum following a cosine schedule from
``method.options.momentum`` (default 0.9) to 1 over ``ctx.total_steps``, updated in ``after_step``).
The student also matches the teacher's output on the clean cube, so the teacher shapes training; the
teacher lives in the method (``state_dict``) and is what the weights files hold (``export_module``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from semantic_genesis import methods
from semantic_genesis.config import Config, load_config
from semantic_genesis.io.shards import ShardWriter
from semantic_genesis.methods.base import Method, StepOutput
from semantic_genesis.methods.options import MethodOptions, parse_options
from semantic_genesis.io.shard_dataset import StoreDataset

CUBE = (16, 16, 8)


def smooth_cubes(n: int, seed: int, shape=CUBE) -> np.ndarray:
    """``(n, 1, *shape)`` float32 cubes in [0, 1] made of a few Gaussian blobs (learnable structure)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    out = np.zeros((n, 1, *shape), dtype=np.float32)
    for i in range(n):
        vol = np.full(shape, 0.2, dtype=np.float32)
        for _ in range(3):
            centre = rng.uniform(0, 1, 3) * np.array(shape)
            radius = rng.uniform(2.0, 4.0)
            vol += 0.6 * np.exp(-((grid - centre) ** 2).sum(-1) / (2 * radius**2))
        out[i, 0] = np.clip(vol, 0, 1)
    return out


def make_cube_store(root: Path, n_train: int = 32, n_val: int = 8, seed: int = 0, shape=CUBE) -> Path:
    writer = ShardWriter(root, "cubes", (1, *shape), dtype="float16")
    for split, n, unit in (("train", n_train, "a"), ("validation", n_val, "b")):
        cubes = smooth_cubes(n, seed + len(unit) + (0 if split == "train" else 100), shape)
        writer.add_unit(unit + split, cubes, [{"patient": unit + split}] * n, split=split)
    writer.finish()
    return root


@dataclass(frozen=True)
class ToyOptions(MethodOptions):
    """``method.options`` of the test methods."""

    nan_at_step: Optional[int] = None
    freeze_decoder_epochs: int = 0
    freeze_bottleneck: bool = False
    momentum: float = 0.9
    poison_at_step: Optional[int] = None
    step_delay: float = 0.0


@methods.register()
class NoiseRestore(Method):
    name = "test_noise_restore"
    description = "test method: remove additive Gaussian noise"
    options_class = ToyOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = parse_options(cfg, ToyOptions, self.name)

    def build_model(self):
        from semantic_genesis.models import create_from_config

        return create_from_config(self.cfg.model)

    def build_datasets(self):
        train = StoreDataset(self.cfg.data, "train", kind="cubes")
        val = StoreDataset(self.cfg.data, "validation", kind="cubes")
        return train, (val if len(val) else None)

    def frozen_parameters(self, model, epoch):
        frozen = []
        if epoch < self.options.freeze_decoder_epochs:
            frozen += [n for n, _ in model.named_parameters() if not n.startswith("down_tr")]
        if self.options.freeze_bottleneck:
            frozen += [n for n, _ in model.named_parameters() if n.startswith("down_tr512")]
        return frozen

    def training_step(self, model, batch, ctx):
        if self.options.step_delay > 0:
            time.sleep(self.options.step_delay)
        x = batch["image"]
        noise = torch.randn(x.shape, generator=ctx.generator, device=x.device)
        out = model((x + 0.1 * noise).clamp(0, 1))
        loss = F.mse_loss(out.float(), x)
        nan_at = self.options.nan_at_step
        if nan_at is not None and ctx.training and ctx.step >= nan_at:
            loss = loss * float("nan")
        return StepOutput(loss, {"mae": float((out.detach().float() - x).abs().mean())})

    def after_step(self, model, ctx):
        at = self.options.poison_at_step
        if at is not None and ctx.step >= at:
            buffer = next(b for n, b in model.named_buffers() if n.endswith("running_var"))
            buffer.fill_(float("inf"))


@methods.register()
class EmaTeacher(NoiseRestore):
    name = "test_ema_teacher"
    description = "test method: denoising student with an EMA teacher (momentum schedule over the run)"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.teacher: torch.nn.Module | None = None
        self.updates = 0

    def build_model(self):
        student = super().build_model()
        self.teacher = copy.deepcopy(student).requires_grad_(False).eval()
        return student

    def on_epoch_start(self, model, epoch):
        self.teacher.to(next(model.parameters()).device)

    def momentum(self, ctx) -> float:
        start = self.options.momentum
        return 1.0 - (1.0 - start) * (math.cos(math.pi * ctx.step / max(ctx.total_steps, 1)) + 1.0) / 2.0

    def training_step(self, model, batch, ctx):
        x = batch["image"]
        noise = torch.randn(x.shape, generator=ctx.generator, device=x.device)
        out = model((x + 0.1 * noise).clamp(0, 1))
        with torch.no_grad():
            target = self.teacher(x)
        loss = F.mse_loss(out.float(), x) + 0.5 * F.mse_loss(out.float(), target.float())
        return StepOutput(loss, {"teacher_mse": float(F.mse_loss(target.float(), x))})

    def after_step(self, model, ctx):
        m = self.momentum(ctx)
        student = model.state_dict()
        for key, value in self.teacher.state_dict().items():
            if value.is_floating_point():
                value.mul_(m).add_(student[key].detach(), alpha=1.0 - m)
            else:
                value.copy_(student[key])
        self.updates += 1

    def state_dict(self):
        return {"teacher": {k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()},
                "updates": self.updates}

    def load_state_dict(self, state):
        self.teacher.load_state_dict(state["teacher"])
        self.updates = int(state["updates"])

    def export_module(self, model):
        return self.teacher


# the tiny run of the engine tests, as key=value overrides (also usable on a command line)
TINY_RUN = [
    "method.name=test_noise_restore",
    "model.width=0.125",
    "train.batch_size=4",
    "train.epochs=2",
    "train.log_every=1",
    "train.checkpoint_every=5",
    "train.num_workers=0",
    "train.progress=false",
    "train.tensorboard=false",
    "optim.name=adam",
    "optim.lr=0.003",
    "optim.scheduler=none",
]


def tiny_config(data: Path, out: Path, *overrides: str) -> Config:
    return load_config(None, [f"data={data}", f"out={out}", *TINY_RUN, *overrides])
