"""PEAC pretraining in a plain PyTorch loop, on phantom chest radiographs.

Zhou, Luo, Pang, Ding, Gotway, Liang, "Learning Anatomically Consistent Embedding for Chest
Radiography" (PEAC), BMVC 2023; official code ``global_local_popar_swin.py`` with the data pipeline of
``utils/build_loader_global_local.py``. Here, in your own loop, at the tiny scale:

* radiographs of 104 = (8 + 4 + 1) x 8 pixels; ``GridViewSampler`` cuts two 64-pixel views on a grid
  of 8-pixel cells (a shared sub-cell jitter, cell offsets 0..4) and ``overlap_masks`` says which tokens
  of the two views cover the same cells (correspondence by construction: the backbone's total stride
  equals the cell);
* POPAR on view 1 (``popar_corrupt``): per sample, shuffled cells (order prediction) or the Models
  Genesis appearance transforms; view 2 stays clean;
* a tiny Swin (``create("swin2d", size="tiny")``, total stride 8) inside ``PEACModel`` (order head,
  restoration decoder, global and local projectors), an EMA teacher (``make_teacher``, ``ema_update``,
  momentum 0.999 -> 1 on ``cosine_schedule``) and ``peac_loss`` (order + restoration + 1e5 x global +
  local), SGD lr 0.1 momentum 0.9 as the official code.

``--out peac.safetensors`` saves the student's Swin; the ``dxc`` / ``pxs`` target tasks and
``build_model_from_weights`` load it like any backbone. The CLI does the same at scale (resume, DDP,
checkpointed teacher): ``semantic-genesis pretrain --config peac_2d_tiny data=FOLDER``.

Usage::

    python examples/pretrain_peac.py --steps 100 --out peac.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.io.radiograph_folder import resize_and_centre_crop
from semantic_genesis.losses.peac import peac_loss
from semantic_genesis.models import create, save_weights
from semantic_genesis.models.peac import PEACModel
from semantic_genesis.phantoms.xray import make_xray_cohort
from semantic_genesis.models.ema import cosine_schedule, ema_update, make_teacher
from semantic_genesis.transforms import build_preset
from semantic_genesis.transforms.grid_views import GridViewSampler, overlap_masks
from semantic_genesis.transforms.popar import popar_corrupt

CELL, CROP_CELLS, MAX_OFFSET = 8, 8, 4  # paper: 32, 14, 4


def phantom_radiographs(n: int, start: int, size: int) -> torch.Tensor:
    """``(n, 1, size, size)`` phantom radiographs of patients ``start .. start + n - 1`` in [0, 1]."""
    cohort = make_xray_cohort(n, seed=0, ct_shape=(64, 64, 48), size=(128, 128), start=start)
    return torch.from_numpy(np.stack([resize_and_centre_crop(r.image, size) for r in cohort]))[:, None]


def step(model, teacher, images, sampler, appearance, generator):
    """The PEAC loss terms of one batch of whole radiographs (what ``semantic_genesis.methods.peac`` does)."""
    views = sampler(images, generator)
    popar = popar_corrupt(views.view1, CELL, appearance, generator)
    mask1, mask2 = overlap_masks(views.offsets1, views.offsets2, CROP_CELLS)
    n = len(images)
    both = torch.cat([popar.input, views.view2])
    student = model(both)
    with torch.no_grad():
        target = teacher(both)
    first = lambda out: type(out)(*(t[:n] for t in out))  # noqa: E731
    last = lambda out: type(out)(*(t[n:] for t in out))  # noqa: E731
    return peac_loss(first(student), last(student), first(target), last(target), popar.perm, popar.target,
                     mask1.to(both.device), mask2.to(both.device), popar.shuffled)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--radiographs", type=int, default=8, help="phantom radiographs to train on")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (official 0.1, momentum 0.9)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained Swin backbone here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)  # every random draw of the loop, the views and POPAR

    sampler = GridViewSampler(CELL, CROP_CELLS, MAX_OFFSET)
    images = phantom_radiographs(args.radiographs, 0, sampler.image_size)
    held_out = phantom_radiographs(2, 1000, sampler.image_size).to(args.device)  # patients never trained on
    appearance = build_preset("models_genesis", spatial_dims=2, flip_prob=0.0, shuffle_prob=1.0, shuffle_windows=40)
    backbone = create("swin2d", size="tiny", in_channels=1)
    model = PEACModel(backbone, CELL, CROP_CELLS, global_widths=(64, 64, 8192), local_widths=(16, 16, 16)).to(args.device)
    teacher = make_teacher(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    momentum = cosine_schedule(0.999, 1.0, 1, args.steps)  # per step, 0.999 -> 1
    print(f"{len(images)} radiographs {tuple(images.shape[2:])} -> views {sampler.view_size} px, "
          f"{sum(p.numel() for p in backbone.parameters()):,} backbone parameters")

    @torch.no_grad()
    def held_out_losses() -> dict[str, float]:
        """The loss terms on fixed views of the held-out radiographs (the same draws every time)."""
        model.eval()
        terms = step(model, teacher, held_out, sampler, appearance, torch.Generator().manual_seed(args.seed))
        model.train()
        return {k: v.item() for k, v in terms.items()}

    before, log_every, window = held_out_losses(), max(1, args.steps // 10), []
    for i in range(1, args.steps + 1):
        batch = images[torch.randint(len(images), (args.batch_size,), generator=g)].to(args.device)
        terms = step(model, teacher, batch, sampler, appearance, g)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        ema_update(model, teacher, float(momentum[i - 1]))
        window.append(terms["loss"].item())
        if i % log_every == 0 or i == args.steps:
            # token spread near 0: every cell gets the same embedding (the collapse the README describes)
            print(f"step {i:4d}/{args.steps}  loss {np.mean(window):.5f}  order accuracy "
                  f"{terms['order_accuracy'].item():.3f}  token spread {terms['token_spread'].item():.4f}")
            window = []
    after = held_out_losses()
    # the total is not monotone in short runs: the consistency terms first grow while the student moves
    # away from the slow EMA teacher (momentum 0.999), then shrink; the POPAR terms fall from the start
    print(f"held-out loss {before['loss']:.5f} -> {after['loss']:.5f}")
    print(f"held-out restoration {before['restoration']:.5f} -> {after['restoration']:.5f}, order "
          f"{before['order']:.5f} -> {after['order']:.5f}, global {before['global']:.2e} -> {after['global']:.2e}")
    if args.out:
        save_weights(model.backbone, args.out, metadata={"method": "peac", "network": "student",
                                                         "input_size": [sampler.view_size] * 2, "grid_cell": CELL})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
