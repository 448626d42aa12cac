"""NCC (lung nodule false-positive reduction) fine-tuning in a plain PyTorch loop, on phantom CT.

The NCC target task of Models Genesis (Zhou et al., MICCAI 2019 / Medical Image Analysis 2021) and
Semantic Genesis (Haghighi et al., MICCAI 2020, Table 1; LUNA16 there; official settings:
``ncc_config`` in the Models Genesis ``keras/downstream_tasks/config.py``): is a candidate a nodule? Here, in
your own loop:

* crops of 16x16x8 voxels (the field of view of the paper's 64x64x32 at ~0.7 mm) around the
  LUNA16-style candidates of phantom CT patients (``make_ct_patient(...).candidates``: true nodules
  and look-alikes), cut with ``extract_crop`` from the CT window [-1000, 1000] HU in [0, 1];
* the network the CLI fine-tunes (``finetune.models.build_model``: the U-Net's encoder + an MLP
  head), from scratch or with ``--init PATH`` the encoder of a pretrained weights file;
* ``bce_loss`` (weighted for the rare nodules) and ``roc_auc`` on patients never trained on.

The CLI's protocol (splits, early stopping, trials, t-tests): ``semantic-genesis evaluate --task ncc``.

Usage::

    python examples/pretrain_models_genesis.py --out mg.safetensors
    python examples/finetune_ncc.py --init mg.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.config import load_config
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import extract_crop
from semantic_genesis.metrics import roc_auc
from semantic_genesis.finetune.models import build_model, parse_init
from semantic_genesis.losses import bce_loss
from semantic_genesis.phantoms import make_ct_patient
from semantic_genesis.preprocess import ct_to_unit

CROP = (16, 16, 8)


def candidate_crops(patients: range, seed: int, max_negatives: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``(N, 1, *CROP)`` in [0, 1] around every nodule and ``max_negatives`` look-alikes per patient,
    and their labels ``(N,)`` (1 = nodule)."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for i in patients:
        patient = make_ct_patient(i, seed)
        unit = ct_to_unit(patient.hu)[None]
        positives = [c for c in patient.candidates if c.label == 1]
        negatives = [c for c in patient.candidates if c.label == 0]
        keep = rng.choice(len(negatives), min(max_negatives, len(negatives)), replace=False)
        for c in positives + [negatives[k] for k in sorted(keep)]:
            crops.append(extract_crop(unit, c.center_vox, CROP))
            labels.append(c.label)
    return torch.from_numpy(np.stack(crops)), torch.tensor(labels, dtype=torch.float32)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", help="pretrained weights (.safetensors); default: from scratch")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-patients", type=int, default=8)
    p.add_argument("--test-patients", type=int, default=4)
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier when training from scratch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    n = args.train_patients
    images, labels = candidate_crops(range(n), args.seed, max_negatives=6)
    test_images, test_labels = candidate_crops(range(n, n + args.test_patients), args.seed, max_negatives=6)
    cfg = load_config("finetune_tiny", [f"model.width={args.width}"])  # model.norm, finetune.head
    model, report = build_model(tasks.get("ncc"), cfg, in_channels=1, init=parse_init(args.init or "scratch"))
    model.to(args.device)
    print(f"{len(images)} training crops ({int(labels.sum())} nodules), {len(test_images)} test crops; "
          f"init {report.init}: {len(report.loaded)} tensors loaded, {len(report.random)} random")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    pos_weight = float((labels == 0).sum() / labels.sum().clamp_min(1))

    log_every, window = max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(images), (args.batch_size,), generator=g)
        logits = model(images[pick].to(args.device))
        optimizer.zero_grad()
        loss = bce_loss(logits, labels[pick, None].to(args.device), pos_weight)
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    model.eval()
    with torch.no_grad():
        scores = model(test_images.to(args.device))[:, 0].cpu()
    auc = roc_auc(scores, test_labels)
    print(f"test auc {auc:.4f} ({int(test_labels.sum())} nodules, {len(test_labels)} candidates)")


if __name__ == "__main__":
    main()
