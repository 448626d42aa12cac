"""Rubik's cube baseline pretraining in a plain PyTorch loop, on phantom chest CT.

Zhuang, Li, Hu, Ma, Zheng, "Self-supervised feature learning for 3D medical images by playing a
Rubik's cube", MICCAI 2019; the "Rubik's cube" row of Semantic Genesis (Haghighi et al., MICCAI 2020,
Table 2). Here, in your own loop: phantom CT cubes (as in ``pretrain_models_genesis.py``),
``RubikRecipe`` (the 2x2x2 sub-cubes permuted by one of P maximally distant permutations, each
rotated by 180 degrees with probability 0.5), the siamese ``RubiksCubeNet3D`` (the Models Genesis
encoder on every sub-cube, permutation and rotation heads) and ``rubik_loss`` (permutation
cross-entropy + rotation BCE). Only the encoder transfers. CLI: ``semantic-genesis pretrain --config
rubiks_cube_3d_tiny``.

Usage::

    python examples/pretrain_rubiks_cube.py --steps 200 --out rubik.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pretrain_models_genesis import CUBE, phantom_cubes

from semantic_genesis.losses import rubik_loss
from semantic_genesis.models import RubiksCubeNet3D, save_weights
from semantic_genesis.transforms.rubik import RubikRecipe


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patients", type=int, default=4, help="phantom CT patients to cut cubes from")
    p.add_argument("--permutations", type=int, default=10, help="P, classes of the permutation head (paper: 100)")
    p.add_argument("--width", type=float, default=0.125, help="encoder channel multiplier (1 = official)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained network here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    cubes = phantom_cubes(args.patients, 16, args.seed)
    recipe = RubikRecipe(num_permutations=args.permutations, rotation_prob=0.5)
    model = RubiksCubeNet3D(width=args.width, num_permutations=args.permutations).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    held_out = phantom_cubes(2, 16, args.seed + 1).to(args.device)  # 32 cubes of patients never trained on
    fixed = recipe(held_out, torch.Generator().manual_seed(args.seed))  # (scrambled, permutation, rotations)

    @torch.no_grad()
    def held_out_loss() -> float:
        out = model(fixed[0])
        return rubik_loss(out.permutation, out.rotation, fixed[1], fixed[2]).total.item()

    before, log_every, window = held_out_loss(), max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        batch = cubes[torch.randint(len(cubes), (args.batch_size,), generator=g)].to(args.device)
        scrambled, permutation, rotations = recipe(batch, g)
        optimizer.zero_grad()
        out = model(scrambled)
        loss = rubik_loss(out.permutation, out.rotation, permutation, rotations).total
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    print(f"held-out loss {before:.5f} -> {held_out_loss():.5f}")
    if args.out:
        save_weights(model, args.out, metadata={"method": "rubiks_cube", "input_size": list(CUBE)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
