"""BMS (brain tumour segmentation) fine-tuning in a plain PyTorch loop, on phantom MRI.

The BMS target task of Models Genesis (Zhou et al., MICCAI 2019 / Medical Image Analysis 2021) and
Semantic Genesis (Haghighi et al., MICCAI 2020, Table 1; BraTS 2018 FLAIR there; official settings:
``bms_config`` in the Models Genesis ``keras/downstream_tasks/config.py``): segment the whole tumour
(BraTS labels 1, 2 and 4) from FLAIR alone. Here, in your own loop:

* phantom brain MRI patients on a 64x64x48 grid (``make_mri_patient(..., shape=...)``), FLAIR scaled
  per patient to [0, 1] by robust percentiles over the brain (``percentile_to_unit``, as the
  ``bms`` task), with the whole-tumour mask (BraTS label > 0);
* training crops of 16x16x8 voxels, half of them centred on the tumour (``sample_volume_crops``,
  the sampler of the CLI's fine-tuning);
* the network the CLI fine-tunes (``finetune.models.build_model``: the U-Net with a new output
  layer), from scratch (with running batch-norm statistics, ``model.norm=batch``) or with
  ``--init PATH`` the encoder and decoder of a pretrained weights file;
* ``dice_bce_loss``; the test volumes are predicted whole in one pass (the U-Net is fully
  convolutional; the CLI uses sliding windows for large scans) and scored with
  ``segmentation_scores`` (IoU and Dice pooled over all voxels).

The CLI's protocol: ``semantic-genesis evaluate --task bms`` (BraTS layout).

Usage::

    python examples/pretrain_models_genesis.py --out mg.safetensors
    python examples/finetune_bms.py --init mg.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.config import load_config
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import sample_volume_crops
from semantic_genesis.metrics import segmentation_scores
from semantic_genesis.finetune.models import build_model, parse_init
from semantic_genesis.losses import dice_bce_loss
from semantic_genesis.phantoms import make_mri_patient
from semantic_genesis.preprocess import percentile_to_unit

GRID = (64, 64, 48)  # coarse phantom grid: the whole volume fits one forward pass
CROP = (16, 16, 8)


def tumour_volumes(patients: range, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """FLAIR volumes ``(1, *GRID)`` in [0, 1] and whole-tumour masks ``(1, *GRID)`` uint8 of phantom MRI patients."""
    images, masks = [], []
    for i in patients:
        patient = make_mri_patient(i, seed, shape=GRID)
        flair = patient.modalities["flair"].array
        images.append(percentile_to_unit(flair, 0.5, 99.5, mask=flair > 0)[None])
        masks.append((patient.seg > 0).astype(np.uint8)[None])
    return images, masks


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", help="pretrained weights (.safetensors); default: from scratch")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-patients", type=int, default=6)
    p.add_argument("--test-patients", type=int, default=2)
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier when training from scratch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    n = args.train_patients
    volumes, masks = tumour_volumes(range(n), args.seed)
    test_volumes, test_masks = tumour_volumes(range(n, n + args.test_patients), args.seed)
    crops, crop_masks = sample_volume_crops(volumes, masks, range(n), CROP, per_volume=32, foreground_fraction=0.5,
                                            rng=np.random.default_rng(args.seed))
    crops, crop_masks = torch.from_numpy(crops), torch.from_numpy(crop_masks).float()
    # running batch-norm statistics: the whole-volume pass in eval mode is normalised as the training crops
    cfg = load_config("finetune_tiny_ncs", [f"model.width={args.width}", "model.norm=batch"])
    model, report = build_model(tasks.get("bms"), cfg, in_channels=1, init=parse_init(args.init or "scratch"))
    model.to(args.device)
    print(f"{len(crops)} training crops from {n} patients, {args.test_patients} test volumes {GRID}; "
          f"init {report.init}: {len(report.loaded)} tensors loaded, {len(report.random)} random")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    log_every, window = max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(crops), (args.batch_size,), generator=g)
        logits = model(crops[pick].to(args.device))
        optimizer.zero_grad()
        loss = dice_bce_loss(logits, crop_masks[pick].to(args.device))
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.from_numpy(np.stack(test_volumes)).to(args.device))).cpu()
    scores = segmentation_scores(probs, [torch.from_numpy(m) for m in test_masks])
    print(f"test iou {scores['iou']:.4f} dice {scores['dice']:.4f} ({args.test_patients} volumes)")


if __name__ == "__main__":
    main()
