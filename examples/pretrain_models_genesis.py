"""Models Genesis pretraining in a plain PyTorch loop, on phantom chest CT.

Zhou, Sodha, Pang, Gotway, Liang, "Models Genesis", MICCAI 2019 / Medical Image Analysis 2021. The
official code trains in ``pytorch/Genesis_Chest_CT.py`` with the pairs of ``generate_pair`` in
``pytorch/utils.py``. Here, in your own loop:

* cubes cut inside the body of phantom CT patients (``semantic_genesis.cubes.sample_cubes``, the
  sampler of ``semantic-genesis cubes``), in [0, 1];
* the ``models_genesis`` transform preset (flip, local shuffle, non-linear intensity, in-/out-painting)
  makes ``(input, target)`` pairs;
* the Models Genesis 3D U-Net (``create("unet3d")``) restores the target; loss = ``restoration_loss``
  (MSE of the sigmoid output).

``--out mg.safetensors`` saves the weights; ``examples/finetune_*.py --init mg.safetensors`` transfers
them. The CLI does the same at scale (resume, DDP, AMP): ``semantic-genesis pretrain --config
models_genesis_3d_tiny``.

Usage::

    python examples/pretrain_models_genesis.py --steps 200 --out mg.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.config import CubesConfig
from semantic_genesis.cubes import sample_cubes
from semantic_genesis.losses import restoration_loss
from semantic_genesis.models import create, save_weights
from semantic_genesis.phantoms import make_ct_patient
from semantic_genesis.preprocess import ct_to_unit
from semantic_genesis.transforms import build_preset

CUBE = (32, 32, 16)  # (X, Y, Z) voxels at the phantom's 2.8 x 2.8 x 3.2 mm


def phantom_cubes(patients: int, per_patient: int, seed: int) -> torch.Tensor:
    """``(N, 1, *CUBE)`` cubes in [0, 1], mostly inside the body of phantom CT patients 0..patients-1."""
    cfg = CubesConfig(cube_size=CUBE, cubes_per_scan=per_patient, content_test="body", body_min_fraction=0.9,
                      border_fraction=(0.05, 0.05, 0.05))
    rng = np.random.default_rng(seed)
    cubes = [sample_cubes(ct_to_unit(make_ct_patient(i, seed).hu), cfg, rng)[0] for i in range(patients)]
    return torch.from_numpy(np.concatenate(cubes))


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
    g = torch.Generator().manual_seed(args.seed)  # every random draw of the loop and the transforms

    cubes = phantom_cubes(args.patients, 16, args.seed)
    preset = build_preset("models_genesis")
    model = create("unet3d", width=args.width).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    print(f"{len(cubes)} cubes {tuple(cubes.shape[2:])}, {sum(p.numel() for p in model.parameters()):,} parameters")

    held_out = phantom_cubes(1, 16, args.seed + 1)  # 16 cubes of a patient never trained on
    pair = preset(held_out, generator=torch.Generator().manual_seed(args.seed))
    pair = [t.to(args.device) for t in pair]

    @torch.no_grad()
    def held_out_loss() -> float:
        return restoration_loss(model(pair[0]), pair[1]).item()

    before, log_every, window = held_out_loss(), max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        batch = cubes[torch.randint(len(cubes), (args.batch_size,), generator=g)].to(args.device)
        inputs, targets = preset(batch, generator=g)
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
        save_weights(model, args.out, metadata={"method": "models_genesis", "input_size": list(CUBE)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
