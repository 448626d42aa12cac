"""``semantic-genesis report cosegmentation WEIGHTS IMAGE... --clusters K --out DIR``: shared anatomy.

After PEAC's ``visualizations/cosegmentation.py`` (Zhou et al., BMVC 2023): the deepest token
embeddings of several radiographs (e.g. of different patients) are clustered together by k-means
(scipy's ``kmeans2``, seeded; the official script uses faiss, an elbow rule and a DINO saliency map),
and every cell is coloured by its cluster, the same colour meaning the same cluster in every image.
Writes ``cosegmentation.png`` and ``cosegmentation.json`` (the cluster map of each image).
"""

from __future__ import annotations

import argparse

REPORT_NAME = "cosegmentation"
REPORT_HELP = "k-means of patch embeddings across radiographs, one colour per cluster (PEAC figure)"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", metavar="WEIGHTS", help="backbone weights (.safetensors)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="radiographs (PNG/JPEG/DICOM), two or more")
    parser.add_argument("--clusters", type=int, default=5, help="k-means clusters (default 5)")
    parser.add_argument("--size", type=int, default=448, help="images resized and centre-cropped to SIZE pixels (default 448)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for the figure and the JSON")


def cosegment(backbone, images, size: int, clusters: int, seed: int = 0):
    """Cluster maps ``(N, h, w)`` of ``images`` (``(H, W)`` arrays in [0, 1]) clustered together."""
    from semantic_genesis.report._embeddings import kmeans, prepare_images, token_embeddings

    emb = token_embeddings(backbone, prepare_images(images, size))
    n, h, w, c = emb.shape
    return kmeans(emb.reshape(-1, c).numpy(), clusters, seed).reshape(n, h, w)


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

    if len(args.images) < 2:
        raise ConfigError("report cosegmentation needs two or more images")
    backbone = build_model_from_weights(args.weights)
    images = [image2d_unit(read_image2d(p)) for p in args.images]
    maps = cosegment(backbone, images, args.size, args.clusters, args.seed)
    crops = prepare_images(images, args.size)[:, 0].numpy()
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("tab10" if args.clusters <= 10 else "tab20", args.clusters)
    for ax, crop, cmap_ids, name in zip(axes[0], crops, maps, args.images):
        ax.imshow(crop, cmap="gray", vmin=0, vmax=1)
        ax.imshow(np.kron(cmap_ids, np.ones((args.size // cmap_ids.shape[0], args.size // cmap_ids.shape[1]))),
                  cmap=cmap, vmin=-0.5, vmax=args.clusters - 0.5, alpha=0.45, interpolation="nearest")
        ax.set_title(Path(name).name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"k-means of patch embeddings, {args.clusters} clusters (same colour = same cluster)", fontsize=10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_figure(out / "cosegmentation.png", fig, dpi=120)
    write_json(out / "cosegmentation.json", {"weights": str(args.weights), "images": list(args.images), "size": args.size,
                                               "clusters": args.clusters, "maps": maps.tolist()})
    print(f"{len(images)} images, {args.clusters} clusters; figure {out / 'cosegmentation.png'}")
    return 0
