"""In-painting (context encoder) baseline pretraining in a plain PyTorch loop, on phantom chest CT.

Pathak, Krahenbuhl, Donahue, Darrell, Efros, "Context encoders: feature learning by inpainting",
CVPR 2016, in 3D on the Models Genesis U-Net as in the "In-painting" row of Semantic Genesis
(Haghighi et al., MICCAI 2020, Table 2). Here, in your own loop: phantom CT cubes (as in
``pretrain_models_genesis.py``), ``ContextInpaintRecipe`` (1-3 boxes dropped and filled with the
cube's mean; ``sample`` also returns the dropped region), the U-Net and ``masked_mse`` (squared
error weighted 0.99 inside the dropped boxes and 0.01 on the kept context; reconstruction only, no
adversarial term). CLI: ``semantic-genesis pretrain --config inpainting_3d_tiny``.

Usage::

    python examples/pretrain_inpainting.py --steps 200 --out inpaint.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pretrain_models_genesis import CUBE, phantom_cubes

from semantic_genesis.losses import masked_mse
from semantic_genesis.models import create, save_weights
from semantic_genesis.transforms.context_mask import ContextInpaintRecipe

INSIDE, OUTSIDE = 0.99, 0.01  # weights of the dropped voxels and of the context


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patients", type=int, default=4, help="phantom CT patients to cut cubes from")
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier (1 = official)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained U-Net here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    cubes = phantom_cubes(args.patients, 16, args.seed)
    recipe = ContextInpaintRecipe()
    model = create("unet3d", width=args.width).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    held_out = phantom_cubes(1, 16, args.seed + 1)  # 16 cubes of a patient never trained on
    fixed = [t.to(args.device) for t in recipe.sample(held_out, generator=torch.Generator().manual_seed(args.seed))]

    @torch.no_grad()
    def held_out_loss() -> float:
        return masked_mse(model(fixed[0]), fixed[1], fixed[2], INSIDE, OUTSIDE).item()

    before, log_every, window = held_out_loss(), max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        batch = cubes[torch.randint(len(cubes), (args.batch_size,), generator=g)].to(args.device)
        inputs, targets, dropped = recipe.sample(batch, generator=g)
        optimizer.zero_grad()
        loss = masked_mse(model(inputs), targets, dropped, INSIDE, OUTSIDE)
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    print(f"held-out loss {before:.5f} -> {held_out_loss():.5f}")
    if args.out:
        save_weights(model, args.out, metadata={"method": "inpainting", "input_size": list(CUBE)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
