"""``semantic-genesis report correspondences WEIGHTS IMAGE_A IMAGE_B --out DIR``: matched anatomy.

After PEAC's ``visualizations/correspondences.py`` (Zhou et al., BMVC 2023): the best buddies (mutual
nearest neighbours by cosine similarity) of the deepest token embeddings of two radiographs, drawn as
coloured points at the centres of their cells on the two images side by side; the ``--pairs`` most
similar pairs are shown (the official script picks them by k-means over the pairs and a DINO saliency
map, which a Swin backbone does not have). Writes ``correspondences.png`` and
``correspondences.json`` (every pair: cells and similarity).
"""

from __future__ import annotations

import argparse

REPORT_NAME = "correspondences"
REPORT_HELP = "best-buddy token matches between two radiographs under a backbone's weights (PEAC figure)"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", metavar="WEIGHTS", help="backbone weights (.safetensors, e.g. a PEAC run's weights/final.safetensors)")
    parser.add_argument("image_a", metavar="IMAGE_A", help="first radiograph (PNG/JPEG/DICOM)")
    parser.add_argument("image_b", metavar="IMAGE_B", help="second radiograph")
    parser.add_argument("--size", type=int, default=448, help="images resized and centre-cropped to SIZE pixels (default 448)")
    parser.add_argument("--pairs", type=int, default=20, help="pairs drawn, most similar first (default 20)")
    parser.add_argument("--out", required=True, help="folder for the figure and the JSON")


def correspondences(backbone, image_a, image_b, size: int) -> dict:
    """Best buddies of two ``(H, W)`` images in [0, 1]: ``{"grid", "stride", "pairs": [(cell_a, cell_b, sim)]}``."""
    from semantic_genesis.report._embeddings import mutual_nearest_neighbours, prepare_images, token_embeddings

    emb = token_embeddings(backbone, prepare_images([image_a, image_b], size))
    h, w = emb.shape[1:3]
    i, j, s = mutual_nearest_neighbours(emb[0].reshape(h * w, -1), emb[1].reshape(h * w, -1))
    cell = lambda k: (int(k) // w, int(k) % w)  # noqa: E731
    return {"grid": [int(h), int(w)], "stride": size // int(h),
            "pairs": [(cell(a), cell(b), float(v)) for a, b, v in zip(i, j, s)]}


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from semantic_genesis.errors import ConfigError
    from semantic_genesis.io.datasets._pixels import image2d_unit
    from semantic_genesis.io.images2d import read_image2d
    from semantic_genesis.models.loading import build_model_from_weights
    from semantic_genesis.report._embeddings import prepare_images
    from semantic_genesis.utils.atomic import write_figure, write_json

    if args.pairs < 1:
        raise ConfigError(f"--pairs must be >= 1, got {args.pairs}")
    backbone = build_model_from_weights(args.weights)
    divisor = int(getattr(backbone, "min_divisor", 1))
    if args.size % divisor:
        raise ConfigError(f"--size {args.size} must be a multiple of the backbone's {divisor}")
    images = [image2d_unit(read_image2d(p)) for p in (args.image_a, args.image_b)]
    result = correspondences(backbone, images[0], images[1], args.size)
    shown = result["pairs"][: args.pairs]
    stride = result["stride"]
    crops = prepare_images(images, args.size)[:, 0].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8), constrained_layout=True)
    colours = plt.cm.hsv(np.linspace(0, 1, max(len(shown), 1), endpoint=False))
    for k, (ax, crop, name) in enumerate(zip(axes, crops, (args.image_a, args.image_b))):
        ax.imshow(crop, cmap="gray", vmin=0, vmax=1)
        ax.set_title(Path(name).name, fontsize=9)
        ax.axis("off")
        for colour, pair in zip(colours, shown):
            r, c = pair[k]
            ax.scatter([(c + 0.5) * stride], [(r + 0.5) * stride], s=40, color=colour, edgecolors="white", linewidths=0.8)
    fig.suptitle(f"{len(result['pairs'])} best-buddy pairs, {len(shown)} most similar shown", fontsize=10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_figure(out / "correspondences.png", fig, dpi=120)
    write_json(out / "correspondences.json", {"weights": str(args.weights), "images": [args.image_a, args.image_b],
                                                "size": args.size, **result})
    print(f"{len(result['pairs'])} best-buddy pairs; figure {out / 'correspondences.png'}")
    return 0
