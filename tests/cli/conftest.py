"""Fixtures of the CLI tests: a tiny CT cohort, its cube set, and a helper that runs the CLI in-process."""

from __future__ import annotations

import pytest

from semantic_genesis.cli import main


@pytest.fixture(scope="session")
def ct_cohort(tmp_path_factory):
    """Three small phantom CT patients in the native layout (64 x 64 x 48 voxels)."""
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("cli_ct") / "ct"
    export_ct_cohort(root, 3, seed=0, layout="native", shape=(64, 64, 48))
    return root


@pytest.fixture(scope="session")
def cube_set(ct_cohort, tmp_path_factory):
    """The cube set of :func:`ct_cohort` with the tiny Models Genesis preset (2 cubes per scan)."""
    from semantic_genesis.config import load_config
    from semantic_genesis.cubes import generate_cubes

    out = tmp_path_factory.mktemp("cli_cubes") / "cubes"
    cfg = load_config("models_genesis_3d_tiny", ["cubes.cubes_per_scan=2", f"data={ct_cohort}", f"out={out}"])
    generate_cubes(cfg, progress=False)
    return out


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (status, stdout, stderr)``; an error (status 2) must be exactly one stderr line."""

    def run(*argv: str) -> tuple[int, str, str]:
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        if status == 2 and captured.err.startswith("error:"):
            assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
        return status, captured.out, captured.err

    return run
