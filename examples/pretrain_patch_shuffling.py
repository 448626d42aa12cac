"""Patch-shuffling (context restoration) baseline pretraining in a plain PyTorch loop, on phantom CT.

Chen, Bentley, Mori, Misawa, Fujiwara, Rueckert, "Self-supervised learning for medical image analysis
using image context restoration", Medical Image Analysis 2019; the "Patch-shuffling" row of Semantic
Genesis (Haghighi et al., MICCAI 2020, Table 2), on the Models Genesis 3D U-Net as there. Here, in
your own loop: phantom CT cubes (as in ``pretrain_models_genesis.py``), ``PatchShuffleRecipe`` (T
pairs of small patches swapped; the intensities are kept, the context is broken), the U-Net and
``restoration_loss`` (L2 of the sigmoid output). CLI: ``semantic-genesis pretrain --config
patch_shuffling_3d_tiny``.

Usage::

    python examples/pretrain_patch_shuffling.py --steps 200 --out ps.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pretrain_models_genesis import CUBE, phantom_cubes

from semantic_genesis.losses import restoration_loss
from semantic_genesis.models import create, save_weights
from semantic_genesis.transforms.patch_swap import PatchShuffleRecipe


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patients", type=int, default=4, help="phantom CT patients to cut cubes from")
    p.add_argument("--swaps", type=int, default=10, help="patch pairs swapped per cube (T)")
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier (1 = official)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained U-Net here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    cubes = phantom_cubes(args.patients, 16, args.seed)
    recipe = PatchShuffleRecipe(swaps=args.swaps)  # 4x4x2 patches on 32x32x16 cubes (1/8 of each side)
    model = create("unet3d", width=args.width).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    held_out = phantom_cubes(1, 16, args.seed + 1)  # 16 cubes of a patient never trained on
    pair = [t.to(args.device) for t in recipe(held_out, generator=torch.Generator().manual_seed(args.seed))]

    @torch.no_grad()
    def held_out_loss() -> float:
        return restoration_loss(model(pair[0]), pair[1]).item()

    before, log_every, window = held_out_loss(), max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        batch = cubes[torch.randint(len(cubes), (args.batch_size,), generator=g)].to(args.device)
        inputs, targets = recipe(batch, generator=g)
        optimizer.zero_grad()
        loss = restoration_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    print(f"held-out loss {before:.5f} -> {held_out_loss():.5f}")
    if args.out:
        save_weights(model, args.out, metadata={"method": "patch_shuffling", "input_size": list(CUBE)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
