import re
import subprocess
import sys
import time
from pathlib import Path

from semantic_genesis.cli import main


def test_help_is_fast_and_lists_commands():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "semantic_genesis", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    assert "info" in proc.stdout
    # The top-level package must not import torch/monai for --help (a loose bound: process start included).
    assert elapsed < 5.0
    check = subprocess.run(
        [sys.executable, "-c", "import sys, semantic_genesis.cli as c; c.build_parser(); print('torch' in sys.modules, 'monai' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "False False"


def test_info_json(capsys):
    import json

    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"].startswith("2.")
    # every runtime dependency of pyproject.toml is listed with its installed version
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    block = pyproject.split("\ndependencies = [", 1)[1].split("]", 1)[0]
    declared = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block, flags=re.MULTILINE)
    assert {"numba", "matplotlib", "tqdm", "monai", "SimpleITK"} <= set(declared)
    assert set(info["versions"]) == set(declared)
    assert all(info["versions"][name] for name in declared)
    assert info["devices"]["cpu_threads"] >= 1
    assert set(info["extras"]) >= {"faiss", "tensorboard"}


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
