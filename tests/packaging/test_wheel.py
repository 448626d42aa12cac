"""The built wheel: what it contains (fast) and a real non-editable install used from outside the
source tree (slow, ``make test-install``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted(p.name for p in (REPO / "src" / "semantic_genesis" / "configs").glob("*.yaml"))


def build_wheel(dest: Path) -> Path:
    """Build the wheel from a clean copy of the sources (no stale ``build/`` of the worktree)."""
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools in this venv")
    source = dest / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(dest / "dist"), str(source)], check=True, timeout=600)
    (wheel,) = (dest / "dist").glob("semantic_genesis-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_the_presets_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert len(PRESETS) >= 20
    assert {f"semantic_genesis/configs/{name}" for name in PRESETS} <= names
    assert {"semantic_genesis/py.typed", "semantic_genesis/cli.py", "semantic_genesis/commands/configs.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    assert "semantic-genesis = semantic_genesis.cli:main" in entry_points
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {version}" in metadata
    assert metadata.count("Project-URL: ") >= 2
    for dependency in ("numba", "matplotlib", "tqdm", "torch", "monai"):
        assert f"Requires-Dist: {dependency}" in metadata


@pytest.mark.slow
def test_installed_wheel_works_outside_the_source_tree(wheel, tmp_path):
    """A fresh venv gets the wheel (not editable); its dependencies come from this venv's site-packages
    through a .pth file (so no download), and every command runs from a folder outside the repository."""
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    # --without-pip: the venv's own setuptools would shadow this venv's (torch requires a recent one);
    # this venv's pip installs into it with --python
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"

    def run(*argv: str) -> str:
        proc = subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    where = run(str(python), "-c", "import semantic_genesis, sys; print(semantic_genesis.__file__)")
    assert where.strip().startswith(str(venv)) and str(REPO) not in where
    run(*pip, "check")  # every dependency of the installed wheel is satisfied
    cli = str(venv / "bin" / "semantic-genesis")
    assert "pretrain" in run(cli, "--help")
    listing = run(cli, "configs")
    assert all(name[: -len(".yaml")] in listing for name in PRESETS)
    assert str(venv) in listing  # the presets are read from the installed package
    assert "model:" in run(cli, "configs", "show", "models_genesis_3d_tiny")
    info = run(cli, "info")
    assert "numba" in info and "NOT INSTALLED" not in info
    run(cli, "phantom", "ct", "--patients", "2", "--shape", "64", "64", "48", "--out", "ct", "-q")
    run(cli, "cubes", "--config", "models_genesis_3d_tiny", "--data", "ct", "--out", "cubes", "-q",
        "cubes.cubes_per_scan=2")
    dry = run(cli, "pretrain", "--config", "models_genesis_3d_tiny.yaml", "--data", "cubes", "--out", "run",
              "train.max_steps=1", "--dry-run")
    assert "dry run of 'pretrain'" in dry and not (work / "run").exists()
