"""Self-discovery at scale: nearest patients in feature space, exact (torch) and with the faiss extra.

Usage::

    python benchmarks/neighbours.py                           # 100k exact, 1M with faiss (needs ~6 GB RAM)
    python benchmarks/neighbours.py --patients 100000 1000000 --queries 100 --k 1000 --dim 512

Semantic Genesis picks, for every class, a reference patient and its K nearest patients by the L2
distance of their autoencoder features (``discovery.neighbours.nearest``). The paper settings are
C = 44 classes and K = 200 neighbours in 3D, C = 100 and K = 1,000 in 2D (75,708 ChestX-ray14 images);
features are the 512 bottleneck channels of the autoencoder averaged over the volume. This times one
``nearest`` call with C queries against N random feature vectors on one CPU thread (torch and faiss
both limited to it), for the exact torch search (float32 block products, exact float64 ranking) and
for ``faiss.knn`` (exact brute force, the ``IndexFlatL2`` search); goal: 1M patients, K = 1,000, under
10 s on one core with faiss. The two results are compared (same neighbours up to float32 near-ties).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100, help="references (classes) searched at once")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--exact-up-to", type=int, default=1_000_000, help="largest N timed with the torch search")
    args = parser.parse_args(argv)

    import torch

    from semantic_genesis.discovery.neighbours import nearest

    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        have_faiss = f"faiss {faiss.__version__}"
    except ImportError:
        have_faiss = ""
    print(f"{args.queries} queries, K = {args.k}, {args.dim} features, one thread; "
          f"{have_faiss or 'faiss not installed (pip install semantic-genesis[faiss])'}")
    print(f"{'patients':>10} {'backend':>8} {'seconds':>8} {'agreement':>10}")
    rng = np.random.default_rng(0)
    for n in args.patients:
        base = rng.standard_normal((n, args.dim), dtype=np.float32)
        queries = base[rng.choice(n, args.queries, replace=False)]
        results = {}
        for backend in ("torch", "faiss"):
            if (backend == "faiss" and not have_faiss) or (backend == "torch" and n > args.exact_up_to):
                continue
            start = time.perf_counter()
            results[backend] = nearest(queries, base, args.k, backend=backend)
            seconds = time.perf_counter() - start
            agree = ""
            if backend == "faiss" and "torch" in results:
                same = np.mean([len(np.intersect1d(a, b)) / args.k
                                for a, b in zip(results["torch"][1], results["faiss"][1])])
                agree = f"{100 * same:.2f} %"
            print(f"{n:>10} {backend:>8} {seconds:>8.2f} {agree:>10}", flush=True)
        del base
    print("agreement: share of faiss's neighbours that the exact search also returns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
