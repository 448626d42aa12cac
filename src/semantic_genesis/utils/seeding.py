"""Seeding helpers: one integer seed drives every random number the project draws."""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """Derive a stable 63-bit seed from any parts (e.g. ``(cohort_seed, patient_index, "nodules")``).

    The result is identical on every machine and Python version (it hashes the parts' ``repr``), so
    per-item random streams are independent of the order in which items are generated.
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
