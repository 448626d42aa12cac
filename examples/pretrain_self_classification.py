"""Self-classification alone (the Semantic Genesis ablation) in a plain PyTorch loop, on phantom CT.

Haghighi, Hosseinzadeh Taher, Zhou, Gotway, Liang, MICCAI 2020, Table 2 row "Self-classification":
the encoder of the Models Genesis 3D U-Net and the Semantic Genesis head (``EncoderClassifier(...,
head="genesis")``, the official ``ClassificationNet3D`` of ``pytorch/train.py --exp en``) classify
each transformed discovered pattern into its pseudo-class; loss = ``classification_loss``
(cross-entropy on logits). The patterns come from the toy self-discovery of
``pretrain_semantic_genesis.py``; the input is the ``semantic_genesis`` preset's transformed
pattern. Only the encoder transfers. CLI: ``semantic-genesis pretrain --config
self_classification_3d_tiny``.

Usage::

    python examples/pretrain_self_classification.py --steps 200 --out sc.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pretrain_semantic_genesis import PATTERN, discover_patterns

from semantic_genesis.losses import classification_loss
from semantic_genesis.models import EncoderClassifier, create, save_weights
from semantic_genesis.transforms import build_preset


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patients", type=int, default=8, help="phantom CT patients searched for neighbours")
    p.add_argument("--neighbours", type=int, default=6, help="K: the reference and its K-1 nearest patients")
    p.add_argument("--classes", type=int, default=6, help="C: coordinates = pseudo-classes (paper: 44)")
    p.add_argument("--ae-steps", type=int, default=20, help="optimiser steps of the self-discovery autoencoder")
    p.add_argument("--width", type=float, default=0.125, help="encoder channel multiplier (1 = official)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained encoder and head here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    patterns, labels = discover_patterns(args.patients, args.neighbours, args.classes, args.seed, args.ae_steps)
    preset = build_preset("semantic_genesis")  # only its transformed input is used
    encoder = create("unet3d", width=args.width)  # its encoder blocks are used, with the Semantic Genesis head
    model = EncoderClassifier(encoder, num_classes=args.classes, head="genesis").to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    fixed = preset(patterns, generator=torch.Generator().manual_seed(args.seed + 1))[0].to(args.device)
    fixed_labels = labels.to(args.device)

    @torch.no_grad()
    def fixed_batch() -> tuple[float, float]:
        logits = model(fixed)
        accuracy = (logits.argmax(1) == fixed_labels).float().mean().item()
        return classification_loss(logits, fixed_labels).item(), accuracy

    (before, _), log_every, window = fixed_batch(), max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(patterns), (args.batch_size,), generator=g)
        inputs, _ = preset(patterns[pick].to(args.device), generator=g)
        optimizer.zero_grad()
        loss = classification_loss(model(inputs), labels[pick].to(args.device))
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}")
            window = []
    after, accuracy = fixed_batch()
    print(f"fixed-batch loss {before:.5f} -> {after:.5f}, pattern accuracy {accuracy:.2f}")
    if args.out:
        save_weights(model, args.out, metadata={"method": "self_classification", "input_size": list(PATTERN)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
