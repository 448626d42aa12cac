"""The README's "Using the networks and weights in a MONAI training loop" snippet runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai")

from semantic_genesis.io.volumes import Volume, write_volume  # noqa: E402
from semantic_genesis.models import create, load_weights, save_weights  # noqa: E402
from semantic_genesis.phantoms.ct import make_ct_patient  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Using the networks and weights in a MONAI training loop"


def readme_snippet() -> str:
    """The first ``python`` code block under the section heading."""
    text = README.read_text(encoding="utf-8")
    assert HEADING in text
    section = text.split(HEADING, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_monai_snippet_runs(tmp_path, monkeypatch, capsys):
    for index in range(2):
        patient = make_ct_patient(index, seed=9, shape=(72, 72, 40))
        write_volume(patient.volume, tmp_path / "scans" / f"case_{index}.nii.gz", dtype="int16")
        lungs = Volume((patient.lung_envelope > 0).astype(np.float32), patient.volume.spacing,
                       patient.volume.origin, patient.volume.direction)
        write_volume(lungs, tmp_path / "labels" / f"case_{index}.nii.gz", dtype="uint8")
    pretrained = create("unet3d", width=0.125)  # a small network keeps the test fast; the code is the same
    with torch.no_grad():
        for tensor in pretrained.parameters():
            tensor.add_(0.01)
    save_weights(pretrained, tmp_path / "mg.safetensors")
    stored, _ = load_weights(tmp_path / "mg.safetensors")

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    try:
        exec(compile(readme_snippet(), str(README), "exec"), namespace)
    finally:
        from monai.utils import set_determinism

        set_determinism(seed=None)
    out = capsys.readouterr().out

    assert len(namespace["cases"]) == 2
    assert re.search(r"restoration PSNR \d+\.\d dB", out) and np.isfinite(namespace["psnr"].aggregate().item())
    # the restoration network ran on GenesisPresetd's inputs, MetaTensors of the cropped scans
    assert namespace["restored"].shape == (2, 1, 64, 64, 32) and namespace["batch"]["image"].shape == (2, 1, 64, 64, 32)
    # segmentation: every pretrained tensor but the output layer was loaded
    report = namespace["report"]
    assert [key for key, _, _ in report.mismatched] == ["out_tr.final_conv.weight", "out_tr.final_conv.bias"]
    assert len(report.loaded) == len(stored) - 2 and f"loaded {len(stored) - 2} tensors" in out
    assert namespace["segmenter"].arch_args["width"] == 0.125  # built from the file's arguments
    assert re.search(r"training Dice \d\.\d{3}", out) and torch.isfinite(namespace["loss"])
