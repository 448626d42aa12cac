"""Semantic Genesis pretraining, self-discovery included, in a plain PyTorch loop on phantom chest CT.

Haghighi, Hosseinzadeh Taher, Zhou, Gotway, Liang, "Learning semantics-enriched representation via
self-discovery, self-classification, and self-restoration", MICCAI 2020. Official code: the pattern
generator ``pattern_generator_3D.py``, the transforms of ``pytorch/utils/purturbation.py`` and the
training loop of ``pytorch/train.py``. Here, at toy scale, with the library's pieces:

1. self-discovery (:func:`discover_patterns`): an autoencoder (``create("unet3d",
   skip_connections=False)``, ``restoration_loss``) embeds whole resized scans; ``nearest`` finds the
   reference patient's nearest patients; ``sample_coordinates`` draws C coordinates inside the
   reference's body that fit every neighbour; ``crop_patterns`` crops them: the crop at coordinate c
   in every neighbour is an instance of pseudo-class c;
2. self-classification + self-restoration: ``YNet`` (the U-Net + a classification head on its
   bottleneck) restores the pattern from a transformed copy and classifies it:
   ``L = MSE + lambda_cls * CE`` (``restoration_loss``, ``classification_loss``), after
   ``--cls-warmup`` steps of classification alone (the paper's warm-up).

``--recipe`` picks the restoration recipe, which is the paper's semantics add-on (Fig. 2):
``semantic_genesis`` (default), ``models_genesis``, ``inpainting`` or ``patch_shuffling`` give
Semantic Genesis, semantic Models Genesis, semantic in-painting and semantic patch-shuffling. CLI:
``semantic-genesis discover`` + ``pretrain --config semantic_genesis_3d_tiny``.

Usage::

    python examples/pretrain_semantic_genesis.py --steps 200 --out sg.safetensors
    python examples/pretrain_semantic_genesis.py --recipe inpainting
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semantic_genesis.discovery.coordinates import ContentTest, body_frame, sample_coordinates
from semantic_genesis.discovery.neighbours import nearest
from semantic_genesis.discovery.patterns import crop_patterns
from semantic_genesis.losses import classification_loss, restoration_loss
from semantic_genesis.models import YNet, create, save_weights
from semantic_genesis.phantoms import make_ct_patient
from semantic_genesis.preprocess import ct_to_unit, resize
from semantic_genesis.transforms import build_preset
from semantic_genesis.transforms.context_mask import ContextInpaintRecipe
from semantic_genesis.transforms.patch_swap import PatchShuffleRecipe

PATTERN = (32, 32, 16)  # pattern size (X, Y, Z) at the phantom's 2.8 x 2.8 x 3.2 mm
AE_INPUT = (32, 32, 16)  # whole scans are resized to this for the autoencoder
RECIPES = {
    "semantic_genesis": lambda: build_preset("semantic_genesis"),
    "models_genesis": lambda: build_preset("models_genesis"),
    "inpainting": ContextInpaintRecipe,
    "patch_shuffling": PatchShuffleRecipe,
}


def discover_patterns(patients: int, neighbours: int, classes: int, seed: int,
                      ae_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-discovery on phantom CT patients ``0..patients-1`` with patient 0 as the reference (on the CPU).

    Returns:
        ``(patterns (neighbours * classes, 1, *PATTERN) in [0, 1], labels (neighbours * classes,) int64)``.
    """
    units = [ct_to_unit(make_ct_patient(i, seed).hu) for i in range(patients)]
    scans = torch.from_numpy(np.stack([resize(u, AE_INPUT) for u in units])[:, None])
    ae = create("unet3d", width=0.125, norm="batch", skip_connections=False)
    optimizer = torch.optim.Adam(ae.parameters(), lr=1e-3)
    for _ in range(ae_steps):
        optimizer.zero_grad()
        loss = restoration_loss(ae(scans), scans)
        loss.backward()
        optimizer.step()
    ae.eval()
    with torch.no_grad():  # one vector per scan: the pooled bottleneck (as discovery.features.embed)
        features = ae.encode(scans).bottleneck.mean(dim=(2, 3, 4)).numpy()
    group = nearest(features[:1], features, k=neighbours)[1][0]  # the reference first
    frames = [body_frame(units[i]) for i in group]
    test = ContentTest(units[group[0]], "body", PATTERN, body_min_fraction=0.6)
    coords, _ = sample_coordinates(frames[0], frames[1:], test, classes, np.random.default_rng(seed),
                                   borders=(0.1, 0.1, 0.1), min_distance=5, max_trials=5000)
    patterns = np.concatenate([crop_patterns(units[i], f, coords, PATTERN)[0] for i, f in zip(group, frames)])
    print(f"self-discovery: autoencoder loss {loss.item():.4f}, reference + neighbours {group.tolist()}, "
          f"{classes} coordinates -> {len(patterns)} patterns")
    return torch.from_numpy(patterns), torch.arange(classes).repeat(len(group))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps (warm-up included)")
    p.add_argument("--cls-warmup", type=int, default=10, help="first steps train the classification branch alone")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patients", type=int, default=8, help="phantom CT patients searched for neighbours")
    p.add_argument("--neighbours", type=int, default=6, help="K: the reference and its K-1 nearest patients")
    p.add_argument("--classes", type=int, default=6, help="C: coordinates = pseudo-classes (paper: 44)")
    p.add_argument("--ae-steps", type=int, default=20, help="optimiser steps of the self-discovery autoencoder")
    p.add_argument("--lambda-cls", type=float, default=0.01, help="weight of the classification loss (paper: 0.01)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="semantic_genesis", help="restoration recipe")
    p.add_argument("--width", type=float, default=0.125, help="U-Net channel multiplier (1 = official)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the pretrained YNet here (.safetensors)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    patterns, labels = discover_patterns(args.patients, args.neighbours, args.classes, args.seed, args.ae_steps)
    recipe = RECIPES[args.recipe]()
    model = YNet(create("unet3d", width=args.width), num_classes=args.classes).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # every pattern, transformed once with its own seed: the batch the loss is checked on before and after
    fixed = [t.to(args.device) for t in recipe(patterns, generator=torch.Generator().manual_seed(args.seed + 1))]
    fixed_labels = labels.to(args.device)

    def joint_loss(inputs, targets, y):
        out = model(inputs)
        return restoration_loss(out.restoration, targets) + args.lambda_cls * classification_loss(out.logits, y)

    with torch.no_grad():
        before = joint_loss(*fixed, fixed_labels).item()
    log_every, window = max(1, args.steps // 10), []
    for step in range(1, args.steps + 1):
        pick_batch = torch.randint(len(patterns), (args.batch_size,), generator=g)
        batch, y = patterns[pick_batch].to(args.device), labels[pick_batch].to(args.device)
        inputs, targets = recipe(batch, generator=g)
        optimizer.zero_grad()
        if step <= args.cls_warmup:  # classification alone: the decoder is not run
            loss = classification_loss(model.classify(model.encode(inputs)), y)
        else:
            loss = joint_loss(inputs, targets, y)
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % log_every == 0 or step == args.steps:
            warm = "  (warm-up: CE only)" if step <= args.cls_warmup else ""
            print(f"step {step:4d}/{args.steps}  loss {np.mean(window):.5f}{warm}")
            window = []
    with torch.no_grad():
        out = model(fixed[0])
        after = joint_loss(*fixed, fixed_labels).item()
        accuracy = (out.logits.argmax(1) == fixed_labels).float().mean().item()
    print(f"fixed-batch loss {before:.5f} -> {after:.5f}, pattern accuracy {accuracy:.2f}")
    if args.out:
        save_weights(model, args.out, metadata={"method": f"semantic:{args.recipe}", "input_size": list(PATTERN)})
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
