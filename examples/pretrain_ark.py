"""Ark pretraining in a plain PyTorch loop, on three phantom chest X-ray datasets with their own labels.

Ma, Pang, Gotway, Liang, "Foundation Ark: Accruing and Reusing Knowledge for Superior and Robust
Performance", MICCAI 2023 (and Ark+). The official code trains in ``engine.py`` / ``trainer.py``. Here,
in your own loop:

* three phantom datasets written in the public layouts of ChestX-ray14 (multi-label, 5 findings kept
  here), RSNA Pneumonia (3 classes) and Shenzhen (tuberculosis, binary) and read back by the real
  readers (``read_labelled_images``);
* one network: a backbone, a projector and one head per dataset (``MultiHeadModel``); a batch of
  dataset ``i`` is scored by head ``i`` only (``head_loss``: BCE, CE for multi-class in Ark+);
* datasets taken in turn (cyclic passes); an EMA teacher (``make_teacher``, ``ema_update``) moved after
  each pass with the momentum 0.9 -> 1 (``cosine_schedule``), and a consistency loss between the
  student's and the teacher's projections weighted by a coefficient 0 -> 0.5.

``--out ark.safetensors`` saves the teacher, whose backbone fine-tunes on DXC / PXS
(``semantic-genesis finetune --init``). The CLI does the same at scale (every dataset's full pass per
epoch, resume, DDP, per-dataset AUC validation): ``semantic-genesis pretrain --config ark_2d_tiny``.

Usage::

    python examples/pretrain_ark.py --steps 120 --out ark.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from semantic_genesis.io.datasets.cxr import read_labelled_images
from semantic_genesis.methods.ark import head_loss
from semantic_genesis.methods.ark_data import ViewSettings, ark_views, load_image
from semantic_genesis.methods.ark_eval import head_probabilities, score_head
from semantic_genesis.models import save_weights
from semantic_genesis.models.multi_head import MultiHeadModel
from semantic_genesis.phantoms.export import export_xray_cohort
from semantic_genesis.models.ema import cosine_schedule, ema_update, make_teacher

SIZE = 32
DATASETS = (  # (layout, reader options, labels kept, cohort seed, finding rate)
    ("chestxray14", {"split": "all"}, ["Cardiomegaly", "Effusion", "Pneumothorax", "Edema", "Emphysema"], 1, 0.4),
    ("rsna_pneumonia", {"variant": "3class"}, [], 2, 0.1),
    ("shenzhen", {}, [], 3, 0.4),
)


def load_datasets(root: Path, n: int):
    """Per dataset: (name, task, label names, images (N, 1, S, S), labels (N, C))."""
    out = []
    for layout, options, keep, seed, rate in DATASETS:
        export_xray_cohort(root / layout, n, seed=seed, layout=layout, shape=(32, 32, 24), size=(SIZE, SIZE),
                           finding_rate=rate)
        split = options.pop("split", None)
        data = read_labelled_images(layout, root / layout, split, **options)
        data = data.restrict_labels(keep) if keep else data
        images = torch.stack([load_image(data, k, (SIZE, SIZE)) for k in range(len(data))])
        out.append((layout, data.task, data.label_names, images, torch.from_numpy(data.filled())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches-per-pass", type=int, default=2, help="batches of one dataset before the next")
    parser.add_argument("--images-per-dataset", type=int, default=24)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--variant", choices=("miccai", "plus"), default="miccai")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the teacher's weights here (.safetensors)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        datasets = load_datasets(Path(tmp), args.images_per_dataset)
    for name, task, names, images, _ in datasets:
        print(f"{name}: {len(images)} images, {task}, {len(names)} classes")

    student = MultiHeadModel("resunet2d", [len(n) for _, _, n, _, _ in datasets], proj_dim=32,
                             backbone_args={"width": 0.25, "norm": "batch"}).to(device)
    teacher = make_teacher(student, independent_init=True)  # a separately initialised twin, as the official code
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
    views = ViewSettings(mode="ark_plus" if args.variant == "plus" else "ark", crop_scale=(0.85, 1.0))
    passes = -(-args.steps // args.batches_per_pass)
    momentum = cosine_schedule(0.9, 1.0, passes, 1)  # one value per dataset pass (ema_mode: epoch)
    coefficient = (momentum - 0.9) * 5 if args.variant == "plus" else cosine_schedule(0.0, 0.5, passes, 1)
    generator = torch.Generator().manual_seed(args.seed)

    def fixed_batch_loss() -> float:  # supervised loss of every head on its dataset's first images
        student.eval()
        with torch.no_grad():
            total = sum(float(head_loss(student(images[:8].to(device), head=d)[1], labels[:8].to(device), task,
                                        args.variant)) for d, (_, task, _, images, labels) in enumerate(datasets))
        student.train()
        return total / len(datasets)

    start = fixed_batch_loss()
    for step in range(args.steps):
        p = step // args.batches_per_pass
        d = p % len(datasets)  # datasets in turn
        _, task, _, images, labels = datasets[d]
        pick = torch.randint(len(images), (args.batch_size,), generator=generator)
        x_s, x_t = ark_views(images[pick].to(device), views, generator)
        c = float(coefficient[p])
        projection, logits = student(x_s, head=d)
        loss = (1 - c) * head_loss(logits, labels[pick].to(device), task, args.variant)
        if c > 0:
            with torch.no_grad():
                target, _ = teacher(x_t, head=d)
            loss = loss + c * F.mse_loss(projection, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % args.batches_per_pass == 0 or step + 1 == args.steps:  # end of a dataset pass
            ema_update(student, teacher, float(momentum[p]))
        print(f"step {step + 1:4d}/{args.steps} loss {float(loss):.4f}  dataset {datasets[d][0]}  c {c:.3f}")
    print(f"fixed-batch loss {start:.4f} -> {fixed_batch_loss():.4f}")

    student.eval()
    with torch.no_grad():
        for d, (name, task, names, images, labels) in enumerate(datasets):
            scores = head_probabilities(student(images.to(device), head=d)[1], task).cpu()
            result = score_head(name, task, names, scores, labels)
            print(f"training-image AUC {name} {result.mean_auc:.3f} (skipped: {', '.join(result.skipped) or '-'})")
    if args.out:
        save_weights(teacher.cpu(), args.out, metadata={"method": "ark", "exported": "teacher"})
        print(f"saved the teacher to {args.out}")


if __name__ == "__main__":
    main()
