"""Nearest patients in feature space (Semantic Genesis: top-K by L2 distance of latent vectors).

Exact search in torch (``torch.cdist``, chunked over queries) is the default; with one feature per
patient the sets are small. When ``faiss`` is installed and the base set is large
(``>= faiss_threshold`` vectors), an exact ``faiss.IndexFlatL2`` is used instead; both give the
same neighbours up to ties.
"""

from __future__ import annotations

import numpy as np

from semantic_genesis.errors import ConfigError

FAISS_THRESHOLD = 100_000


def _have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def nearest(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    backend: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
    what: str = "neighbours",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for every row of ``queries`` by L2 distance.

    Args:
        queries: ``(Q, D)`` float features.
        base: ``(N, D)`` float features.
        k: neighbours per query, ``0 <= k <= N``. A query that is itself in ``base`` comes first
            (distance 0), as in the official generator where rank 0 is the reference.
        backend: ``"auto"``, ``"torch"`` or ``"faiss"``.
        faiss_threshold: ``auto`` uses faiss (when installed) from this many base vectors on.
        what: name of ``k`` in error messages (e.g. ``"discovery.num_neighbours"``).

    Returns:
        ``(distances, indices)``, each ``(Q, k)``, sorted by increasing distance (ties by index).

    Raises:
        ConfigError: ``k`` larger than the number of base vectors.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    if k > len(base) or k < 0:
        raise ConfigError(f"{what}={k} but only {len(base)} patients are available to choose from")
    if backend not in ("auto", "torch", "faiss"):
        raise ConfigError(f"unknown neighbour backend {backend!r}; expected auto, torch or faiss")
    if k == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    use_faiss = backend == "faiss" or (backend == "auto" and len(base) >= faiss_threshold and _have_faiss())
    if use_faiss:
        import faiss

        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
        d2, idx = index.search(queries, k)
        return np.sqrt(np.maximum(d2, 0)).astype(np.float32), idx.astype(np.int64)
    import torch

    b = torch.from_numpy(base).double()
    out_d, out_i = [], []
    for start in range(0, len(queries), 1024):
        q = torch.from_numpy(queries[start : start + 1024]).double()
        dist = torch.cdist(q, b)
        # stable sort: equal distances keep index order, so results are deterministic
        d_sorted, i_sorted = torch.sort(dist, dim=1, stable=True)
        out_d.append(d_sorted[:, :k].float().numpy())
        out_i.append(i_sorted[:, :k].numpy())
    return np.concatenate(out_d), np.concatenate(out_i).astype(np.int64)
