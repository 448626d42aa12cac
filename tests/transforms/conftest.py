"""Shared fixtures for transform tests: the port of the official per-cube loop (benchmarks/transforms.py)
and the three implementations (compiled CPU kernels, torch, device path) that the key tests run on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from semantic_genesis.transforms._backend import kernels, use_backend

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "transforms.py"


@pytest.fixture(scope="session")
def official():
    """The ``official_*`` reference functions (stdlib random + numpy, one cube at a time)."""
    spec = importlib.util.spec_from_file_location("transforms_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=["kernel", "torch", "device"])
def backend(request):
    """Run the test with the compiled CPU kernels, the torch implementation (parameters drawn on the CPU)
    and the device path (every draw from a generator on the batch's device, here the CPU: the code that
    runs on a GPU)."""
    if request.param == "kernel" and kernels() is None:
        pytest.skip("numba is not installed: no compiled kernels")
    with use_backend(request.param):
        yield request.param
