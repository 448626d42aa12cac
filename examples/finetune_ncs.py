"""NCS (lung nodule segmentation) fine-tuning in a plain PyTorch loop, on phantom CT.

The NCS target task of Models Genesis (Zhou et al., MICCAI 2019 / Medical Image Analysis 2021) and
Semantic Genesis (Haghighi et al., MICCAI 2020, Table 1; LIDC-IDRI there; official settings:
``ncs_config`` in the Models Genesis ``keras/downstream_tasks/config.py``): segment the nodule in a crop centred
on it. Here, in your own loop:

* 16x16x8 crops (the field of view of the paper's 64x64x32 at ~0.7 mm) centred on every nodule of
  phantom CT patients (``make_ct_patient(...).nodules``) with the nodule mask of the label map,
  cut with ``extract_crop``; CT window [-1000, 1000] HU in [0, 1];
* the network the CLI fine-tunes (``finetune.models.build_model``: the U-Net with a new output
  layer), from scratch or with ``--init PATH`` the encoder and decoder of a pretrained weights file;
* ``dice_bce_loss`` and ``segmentation_scores`` (IoU and Dice pooled over all test voxels, the
  official IoU) on patients never trained on.

The CLI's protocol: ``semantic-genesis evaluate --task ncs``.

Usage::

    python examples/pretrain_models_genesis.py --out mg.safetensors
    python examples/finetune_ncs.py --init mg.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.config import load_config
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import extract_crop
from semantic_genesis.metrics import segmentation_scores
from semantic_genesis.finetune.models import build_model, parse_init
from semantic_genesis.losses import dice_bce_loss
from semantic_genesis.phantoms import CT_LABELS, make_ct_patient
from semantic_genesis.preprocess import ct_to_unit

CROP = (16, 16, 8)


def nodule_crops(patients: range, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``(N, 1, *CROP)`` in [0, 1] centred on every nodule and their masks ``(N, 1, *CROP)`` in {0, 1}."""
    crops, masks = [], []
    for i in patients:
        patient = make_ct_patient(i, seed)
        unit = ct_to_unit(patient.hu)[None]
        nodule = (patient.labels == CT_LABELS["nodule"]).astype(np.float32)[None]
        for n in patient.nodules:
            crops.append(extract_crop(unit, n.center_vox, CROP))
            masks.append(extract_crop(nodule, n.center_vox, CROP))
    return torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(masks))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", help="pretrained weights (.safetensors); default: from scratch")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-patients", type=int, default=12)
    p.add_argument("--test-patients", type=int, default=6)
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier when training from scratch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    n = args.train_patients
    images, masks = nodule_crops(range(n), args.seed)
    test_images, test_masks = nodule_crops(range(n, n + args.test_patients), args.seed)
    cfg = load_config("finetune_tiny_ncs", [f"model.width={args.width}"])  # model.norm
    model, report = build_model(tasks.get("ncs"), cfg, in_channels=1, init=parse_init(args.init or "scratch"))
    model.to(args.device)
    print(f"{len(images)} training nodules, {len(test_images)} test nodules; "
          f"init {report.init}: {len(report.loaded)} tensors loaded, {len(report.random)} random")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    log_every, window = max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(images), (args.batch_size,), generator=g)
        logits = model(images[pick].to(args.device))
        optimizer.zero_grad()
        loss = dice_bce_loss(logits, masks[pick].to(args.device))
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(test_images.to(args.device))).cpu()
    scores = segmentation_scores(probs, test_masks)  # pooled over all test voxels
    print(f"test iou {scores['iou']:.4f} dice {scores['dice']:.4f} ({len(test_images)} nodules)")


if __name__ == "__main__":
    main()
