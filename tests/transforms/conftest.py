"""Shared fixtures for transform tests: the port of the official per-cube loop (benchmarks/transforms.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

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
