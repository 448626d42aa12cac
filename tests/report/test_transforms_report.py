import json

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.io.volumes import Volume, write_volume
from semantic_genesis.report.transforms import choose_cube


def chest(shape=(80, 80, 40)):
    """A body (soft tissue, 40 HU) holding two dark lungs (-850 HU), surrounded by air."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[(x / 0.95) ** 2 + (y / 0.8) ** 2 < 1] = 40.0
    for cx in (-0.45, 0.45):
        hu[((x - cx) / 0.35) ** 2 + (y / 0.55) ** 2 < 1] = -850.0
    return hu


def test_choose_cube_prefers_lung_inside_the_body():
    unit = (np.clip(chest(), -1000, 1000) + 1000) / 2000
    corner = choose_cube(unit, (32, 32, 16), seed=0)
    cube = unit[corner[0]:corner[0] + 32, corner[1]:corner[1] + 32, corner[2]:corner[2] + 16]
    assert (cube < 0.2).mean() > 0.5  # mostly lung (air-like) ...
    assert cube.mean() > 0.05  # ... not the air around the body (exactly 0)


def test_report_transforms_writes_gallery(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        write_volume(Volume(chest(), metadata={"modality": "ct"}), scans / f"case{i}.nii.gz")
    out = tmp_path / "gallery"
    assert main(["report", "transforms", "--data", str(scans), "--out", str(out), "--size", "32", "32", "16"]) == 0
    meta = json.loads((out / "transforms.json").read_text())
    assert len(meta["cubes"]) == 2 and meta["columns"][0] == "original" and "Semantic Genesis" in meta["columns"]
    assert all("Y" in cube["flip_axes"] and len(cube["spacing_mm"]) == 3 for cube in meta["cubes"])
    assert (out / "transforms.png").stat().st_size > 10_000


def test_report_transforms_bad_data(tmp_path, capsys):
    assert main(["report", "transforms", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_gallery_flip_is_visible_in_an_axial_slice():
    import torch

    from semantic_genesis.report.transforms import visible_flip

    cubes = torch.rand(6, 1, 8, 10, 4, generator=torch.Generator().manual_seed(0))
    flipped, parity = visible_flip(cubes, torch.Generator().manual_seed(1))
    assert parity[:, 1].all()  # always anterior-posterior, which a mid-Z slice shows
    for i in range(6):
        expected = cubes[i]
        for axis in range(3):
            if parity[i, axis]:
                expected = expected.flip(axis + 1)
        assert torch.equal(flipped[i], expected)
        assert not torch.equal(flipped[i, 0, :, :, 2], cubes[i, 0, :, :, 2])
    assert cubes.shape == flipped.shape
