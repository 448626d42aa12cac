"""Pretrain the Semantic Genesis paper's baselines on phantom CT and check their weights transfer.

For each method (default: ``autoencoder``, ``inpainting``, ``patch_shuffling``, ``rubiks_cube``) this
runs the CLI pipeline with the method's tiny preset ``<method>_3d_tiny`` (``semantic-genesis configs``
lists the shipped presets):

    semantic-genesis phantom ct --patients 6 --layout native --out OUT/ct
    semantic-genesis cubes --config <method>_3d_tiny --data OUT/ct --out OUT/cubes
    semantic-genesis pretrain --config <method>_3d_tiny data=OUT/cubes out=OUT/<method>

then prints the first and last logged training loss and loads the weights into a fine-tuning
classifier (encoder + new head), as ``semantic-genesis finetune/evaluate`` does.

Usage::

    python examples/pretrain_baselines.py --out baselines_out --steps 100
    python examples/pretrain_baselines.py --methods rubiks_cube --steps 300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def cli(*args: str) -> None:
    print("$ semantic-genesis " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "semantic_genesis", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("baselines_out"))
    p.add_argument("--methods", default="autoencoder,inpainting,patch_shuffling,rubiks_cube")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps per method")
    args = p.parse_args(argv)
    out = args.out.resolve()
    cli("phantom", "ct", "--patients", "6", "--layout", "native", "--out", str(out / "ct"), "--quiet")
    cubes = out / "cubes"
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        config = f"{method}_3d_tiny"  # a shipped preset
        if not (cubes / "manifest.json").is_file():  # all tiny cube presets share the 32x32x16 cube set
            cli("cubes", "--config", str(config), "--data", str(out / "ct"), "--out", str(cubes), "--quiet")
        run = out / method
        cli("pretrain", "--config", str(config), f"data={cubes}", f"out={run}", f"train.max_steps={args.steps}",
            "train.progress=false")

        from semantic_genesis.models import EncoderClassifier, create, load_pretrained
        from semantic_genesis.models.loading import read_pretrained
        from semantic_genesis.training.logging import read_metrics

        losses = [r["loss"] for r in read_metrics(run, "train")]
        weights = run / "weights" / "final.safetensors"
        pretrained = read_pretrained(weights)  # the network the file records, and its backbone
        classifier = EncoderClassifier(create(pretrained.backbone, **pretrained.backbone_args), num_classes=1)
        report = load_pretrained(classifier, weights, strict=False)
        encoder = [k for k in report.loaded if k.split(".")[0] in classifier.encoder_state_dict_prefixes]
        print(f"{method}: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged windows; "
              f"{len(encoder)} encoder tensors loaded into a fine-tuning classifier from {weights}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
