"""The device path (every random draw on the batch's device; the default on a GPU), run here on the CPU.

Every test that takes the ``backend`` fixture already runs on it (window permutation law, painting
counts and noise, maps against the official ``np.interp``, preset rates). These tests compare its
per-sample frequencies with the compiled kernels' (the reference path) over many seeded draws, check
that a call is a fixed sequence of operations with a few host synchronisations (no per-sample work), and
run the local shuffle's two passes in many small chunks.
"""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from semantic_genesis.transforms import build_preset, local_shuffle, use_backend
from semantic_genesis.transforms._backend import kernels

from .conftest import gen

REFERENCE = "kernel" if kernels() is not None else "torch"

#: aten operations that make the host wait for a GPU (a value or a data-dependent shape on the host).
SYNCING = {"nonzero", "_local_scalar_dense", "is_nonzero", "item", "masked_select", "unique", "repeat_interleave"}


class OpCounter(TorchDispatchMode):
    """Records the name of every aten operation dispatched inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))

    def syncs(self) -> int:
        return sum(op in SYNCING for op in self.ops)


def per_sample_statistics(inputs: torch.Tensor, targets: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    changed = (inputs != targets).flatten(1).double().mean(1)
    return {
        "identical": (changed == 0).double().mean().item(),
        "mostly_changed": (changed > 0.9).double().mean().item(),
        "changed": changed.mean().item(),
        "flipped": (targets != x).flatten(1).any(1).double().mean().item(),
        "mean": inputs.double().mean().item(),
        "std": inputs.double().std().item(),
    }


@pytest.mark.parametrize("name, tolerance", [("models_genesis", 0.02), ("semantic_genesis", 0.035)])
def test_preset_frequencies_match_the_reference_path(name, tolerance):
    """Identity rate, share of samples changed almost everywhere (non-linear or out-painted), mean changed
    fraction, flip rate and the value moments agree with the reference path over 3,000 samples (the
    tolerances are about 3 standard errors of the difference; the semantic_genesis stages differ more)."""
    x = torch.rand(3000, 1, 20, 20, 10, generator=gen(30))
    preset = build_preset(name, shuffle_windows=200) if name == "models_genesis" else build_preset(name, elastic=False)
    stats = {}
    for backend in (REFERENCE, "device"):
        with use_backend(backend):
            stats[backend] = per_sample_statistics(*preset(x, gen(31)), x)
    for key, value in stats[REFERENCE].items():
        assert abs(stats["device"][key] - value) < tolerance, (key, stats)
    if name == "models_genesis":
        assert 0.002 < stats["device"]["identical"] < 0.012  # 0.5 * 0.1 * 0.1
        assert 0.30 < stats["device"]["flipped"] < 0.45


def test_shuffle_changed_fraction_per_sample_matches_the_reference():
    """Mean and spread over cubes of the fraction of voxels a 600-window shuffle changes."""
    x = torch.rand(200, 1, 30, 30, 20, generator=gen(32))
    fractions = {}
    for backend in (REFERENCE, "device"):
        with use_backend(backend):
            fractions[backend] = (local_shuffle(x, gen(33), num_windows=600) != x).flatten(1).double().mean(1)
    ref, dev = fractions[REFERENCE], fractions["device"]
    assert abs(dev.mean().item() - ref.mean().item()) < 3 * ref.std().item() / 200**0.5 + 1e-3
    assert 0.7 < dev.std().item() / ref.std().item() < 1.4


def test_device_path_is_deterministic_given_the_seed_and_varies_with_it():
    x = torch.rand(6, 1, 24, 24, 12, generator=gen(34))
    preset = build_preset("models_genesis", shuffle_windows=300)
    with use_backend("device"):
        a, b, c = (preset(x, gen(seed))[0] for seed in (35, 35, 36))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", ["models_genesis", "semantic_genesis"])
def test_a_call_is_a_fixed_sequence_of_operations_whatever_the_batch(name):
    """The same aten operations for 4 and for 24 samples up to the exact evaluation of the maps' steep
    cells (no per-sample loop), and at most a few host synchronisations per call: the seed of the device
    generator (a CPU value), the local shuffle's window totals and kept windows (its ``nonzero`` comes
    first), finding the values in the steep cells, and the solver's convergence checks (every 8 steps;
    their number depends on the values found)."""
    preset = build_preset(name, shuffle_windows=50)
    sequences = []
    for batch in (4, 24):
        x = torch.rand(batch, 1, 16, 16, 8, generator=gen(37))
        with use_backend("device"):
            preset(x, gen(38))  # device constants are made at the first call
            with OpCounter() as counter:
                preset(x, gen(38))
        assert "nonzero" in counter.ops and counter.syncs() <= 6, counter.ops
        sequences.append(counter.ops[: counter.ops.index("nonzero")])
    assert sequences[0] == sequences[1]


def test_device_shuffle_in_many_small_chunks_keeps_the_exact_law(monkeypatch):
    """Windows handled a few voxels at a time (both passes split into many chunks, and a window larger
    than a chunk alone in one): one window on a 2x2 image still follows the reference law (the 24
    permutations, see ``test_window_permutation_law_exact``), and with many windows every value still
    comes from the voxel itself or a neighbour within the window reach."""
    shuffle_module = importlib.import_module("semantic_genesis.transforms.local_shuffle")
    monkeypatch.setitem(shuffle_module.DEVICE_CHUNK, "cpu", 3)
    n = 6000
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 2, 2).expand(n, 1, 2, 2).contiguous()
    with use_backend("device"):
        y = local_shuffle(x, gen(40), num_windows=1, size_divisor=1, spatial_dims=2)
    codes = y.view(n, 4).long()
    assert torch.equal(codes.sort(1).values, torch.arange(4).expand(n, 4))
    counts = torch.bincount((codes * torch.tensor([64, 16, 4, 1])).sum(1), minlength=256)
    expected = {p: 1 / 96 for p in itertools.permutations(range(4))}
    expected[(0, 1, 2, 3)] += 0.5
    for swap in ((1, 0, 2, 3), (0, 1, 3, 2), (2, 1, 0, 3), (0, 3, 2, 1)):
        expected[swap] += 1 / 16
    chi2 = sum((counts[p[0] * 64 + p[1] * 16 + p[2] * 4 + p[3]].item() - n * q) ** 2 / (n * q) for p, q in expected.items())
    assert chi2 < 49.7  # chi-square, 23 degrees of freedom, p = 0.001

    values = torch.arange(2 * 30 * 30, dtype=torch.float32).view(2, 1, 30, 30)
    with use_backend("device"):
        moved = local_shuffle(values, gen(41), num_windows=400, spatial_dims=2).long().view(2, 30, 30)
    rows, cols = torch.meshgrid(torch.arange(30), torch.arange(30), indexing="ij")
    source = moved - torch.arange(2).view(2, 1, 1) * 900  # each image keeps its own values
    assert ((source >= 0) & (source < 900)).all()
    assert ((source // 30 - rows).abs().max() <= 2) and ((source % 30 - cols).abs().max() <= 2)
    assert (source != rows * 30 + cols).double().mean() > 0.5


def test_device_shuffle_chunks_cover_every_window_once_within_the_bounds():
    """The device shuffle's chunking (``_window_chunks``): consecutive ranges that hold every window with
    voxels exactly once, at most ``max_windows`` windows and ``limit`` voxels plus one window each, and
    the right voxel counts; on random volumes with empty windows."""
    chunks_of = importlib.import_module("semantic_genesis.transforms.local_shuffle")._window_chunks
    g = gen(42)
    for _ in range(300):
        count = int(torch.randint(1, 40, (1,), generator=g))
        volume = torch.tensor([0, 0, 1, 2, 3, 5, 8, 13])[torch.randint(0, 8, (count,), generator=g)]
        limit, max_windows = int(torch.randint(1, 30, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g))
        chunks = chunks_of(volume, limit, max_windows)
        assert sum(size for *_, size in chunks) == int(volume.sum())
        for (begin, end, size), following in zip(chunks, chunks[1:] + [(count, count, 0)]):
            assert 0 <= begin < end <= following[0] and end - begin <= max_windows
            assert size == int(volume[begin:end].sum()) > 0 and size <= limit + int(volume.max())
            assert int(volume[end:following[0]].sum()) == 0  # what lies between two chunks has no voxel
        assert int(volume[: chunks[0][0]].sum()) == 0 if chunks else int(volume.sum()) == 0
