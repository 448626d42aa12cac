"""Anatomical consistency of patch embeddings on phantom radiographs, before and after PEAC pretraining.

PEAC (Zhou et al., BMVC 2023) claims that corresponding anatomy gets similar patch embeddings across
patients. On phantom radiographs the anatomy of every cell is known (right lung, left lung, heart,
other: :func:`semantic_genesis.report._embeddings.phantom_anatomy`), so the claim can be measured:
for every pair of ``--patients`` held-out patients, the best buddies (mutual nearest neighbours) of
their token embeddings are found and the share of pairs whose two cells carry the same label is
compared with chance (random pairs with the same label frequencies).

Usage::

    semantic-genesis phantom xray -n 48 --shape 64 64 48 --size 104 104 --out /tmp/xray
    semantic-genesis pretrain --config peac_2d_tiny data=/tmp/xray out=/tmp/peac train.max_steps=400 \\
        train.steps_per_epoch=50
    OMP_NUM_THREADS=1 python benchmarks/peac_anatomy.py /tmp/peac/weights/final.safetensors

Prints one JSON line per network: the randomly initialised backbone of the same architecture (seed 0)
and each weights file given: the mean number of best-buddy pairs per pair of patients, the mean
agreement, the mean chance level and ``token_spread``, the collapse monitor of the training log
(:func:`semantic_genesis.losses.peac.embedding_spread`) over every token of the held-out images: near 0
when the network gives every cell of every radiograph the same embedding.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch


def measure(backbone, images, labels) -> dict:
    from semantic_genesis.losses.peac import embedding_spread
    from semantic_genesis.report._embeddings import cell_labels, label_agreement, token_embeddings

    emb = token_embeddings(backbone, images)
    grid = tuple(emb.shape[1:3])
    cells = [cell_labels(lab, grid) for lab in labels]
    rows = [label_agreement(emb[a], emb[b], cells[a], cells[b]) for a, b in itertools.combinations(range(len(labels)), 2)]
    return {"patient_pairs": len(rows), "grid": list(grid), "best_buddies": float(np.mean([r["pairs"] for r in rows])),
            "agreement": float(np.mean([r["agreement"] for r in rows])), "chance": float(np.mean([r["chance"] for r in rows])),
            "token_spread": float(embedding_spread(emb))}


def main(argv: list[str] | None = None) -> None:
    from semantic_genesis.models import create
    from semantic_genesis.models.loading import build_model_from_weights
    from semantic_genesis.phantoms.xray import make_xray_cohort
    from semantic_genesis.report._embeddings import phantom_anatomy, prepare_images

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="backbone weights files (.safetensors)")
    p.add_argument("--patients", type=int, default=8, help="held-out phantom patients (default 8)")
    p.add_argument("--start", type=int, default=200, help="first patient index (default 200: not in a 48-patient cohort)")
    p.add_argument("--size", type=int, default=128, help="radiograph size in pixels (default 128)")
    args = p.parse_args(argv)

    cohort = make_xray_cohort(args.patients, seed=0, ct_shape=(64, 64, 48), size=(args.size, args.size), start=args.start)
    images = prepare_images([r.image for r in cohort], args.size)
    labels = [phantom_anatomy(r) for r in cohort]
    first = build_model_from_weights(args.weights[0])
    torch.manual_seed(0)
    random = create(first.ARCH_NAME, **first.arch_args)
    print(json.dumps({"network": "random init", **measure(random, images, labels)}))
    for path in args.weights:
        print(json.dumps({"network": path, **measure(build_model_from_weights(path), images, labels)}))


if __name__ == "__main__":
    main()
