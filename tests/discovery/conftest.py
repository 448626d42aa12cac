"""Shared fixtures of the self-discovery tests: a tiny phantom cohort and one finished discovery run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

N_PATIENTS = 12
SHAPE = (48, 48, 40)

# A CPU-sized discovery: 12 phantoms of 48x48x40 (7.5 mm voxels), patterns of 16^3.
TINY = [
    "seed=0",
    "train.device=cpu",
    "discovery.progress=false",
    "discovery.ae_input_size=[32,32,16]",
    "discovery.ae_width=0.125",
    "discovery.ae_epochs=6",
    "discovery.ae_batch_size=5",
    "discovery.val_fraction=0.2",
    "discovery.pattern_size=[16,16,16]",
    "discovery.num_neighbours=6",
    "discovery.num_val_neighbours=2",
    "discovery.num_classes=6",
    "discovery.classes_per_reference=3",
    "discovery.num_resolutions=3",
    "discovery.multires_size_range=[12,20]",
    "discovery.multires_jitter=2",
    "discovery.min_distance=5",
    "discovery.content_test=body",
    "discovery.body_min_fraction=0.6",
]


def tiny_config(*overrides: str):
    from semantic_genesis.config import load_config

    return load_config(None, [*TINY, *overrides])


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """12 native-layout phantom CT patients (48x48x40), generated once per session."""
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    root = tmp_path_factory.mktemp("discovery_cohort")
    write_native_ct_cohort(root, N_PATIENTS, seed=0, shape=SHAPE, progress=False)
    return root


@pytest.fixture(scope="session")
def body_sizes(cohort) -> dict[str, float]:
    """Body size of every phantom: the fraction of the scan inside the body (from its label map)."""
    from semantic_genesis.io.volumes import read_volume

    info = json.loads((cohort / "cohort.json").read_text())
    return {pid: float((read_volume(cohort / "labels" / f"{pid}.nii.gz").array > 0).mean()) for pid in info["patients"]}


@pytest.fixture(scope="session")
def discovered(cohort, tmp_path_factory):
    """One complete tiny discovery run (paper strategy)."""
    from semantic_genesis.discovery.pipeline import run_discovery

    out = tmp_path_factory.mktemp("discovery_run")
    result = run_discovery(tiny_config(), cohort, out, log=lambda s: None)
    return result
