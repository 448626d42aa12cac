"""Bad input through the CLI: one line ``error: FILE: problem`` and exit status 2, never a traceback.

Every file is written by the test (a few kB); the cases are those a new user meets with real data:
complex or RGB NIfTI, a MetaImage with a missing or short ``.raw``, unsupported voxel types, values
beyond float32, volumes with 0 slices, symlink loops, empty files, DICOM series with missing or
unreadable slices.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.io.volumes import Volume, write_dicom_series, write_volume


def _nifti(path: Path, data: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _complex(tmp: Path) -> Path:
    return _nifti(tmp / "complex.nii.gz", (np.ones((4, 5, 6)) * (1 + 2j)).astype(np.complex64))


def _rgb(tmp: Path) -> Path:
    return _nifti(tmp / "rgb.nii.gz", np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]))


def _short_raw(tmp: Path) -> Path:
    write_volume(Volume(np.zeros((64, 64, 192))), tmp / "short.mhd")
    with open(tmp / "short.raw", "r+b") as handle:
        handle.truncate(1048576)
    return tmp / "short.mhd"


def _missing_raw(tmp: Path) -> Path:
    write_volume(Volume(np.zeros((4, 5, 6))), tmp / "noraw.mhd")
    (tmp / "noraw.raw").unlink()
    return tmp / "noraw.mhd"


def _float128(tmp: Path) -> Path:
    _nifti(tmp / "ok.nii", np.zeros((4, 4, 4), np.float32))
    header = bytearray((tmp / "ok.nii").read_bytes())
    struct.pack_into("<h", header, 70, 1536)
    (tmp / "f128.nii").write_bytes(bytes(header))
    return tmp / "f128.nii"


def _overflow(tmp: Path) -> Path:
    data = np.zeros((4, 4, 4))
    data[1, 1, 1] = 1e300
    return _nifti(tmp / "huge.nii.gz", data)


def _no_slices(tmp: Path) -> Path:
    return _nifti(tmp / "flat.nii.gz", np.zeros((128, 128, 0), np.float32))


def _loop(tmp: Path) -> Path:
    (tmp / "loop.nii.gz").symlink_to(tmp / "loop.nii.gz")
    return tmp / "loop.nii.gz"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.nii.gz").write_bytes(b"")
    return tmp / "empty.nii.gz"


CASES = {
    "complex NIfTI": (_complex, "complex.nii.gz", "complex-valued voxels (NIfTI data type complex64)"),
    "RGB NIfTI": (_rgb, "rgb.nii.gz", "RGB colour voxels (NIfTI data type RGB)"),
    "MHD short .raw": (_short_raw, "short.raw", "data file of short.mhd is truncated: expected 3145728 bytes"),
    "MHD missing .raw": (_missing_raw, "noraw.raw", "data file of noraw.mhd cannot be read: no such file"),
    "unsupported NIfTI dtype": (_float128, "f128.nii", "unsupported NIfTI data type 1536 (float128)"),
    "float64 overflow": (_overflow, "huge.nii.gz", "1 voxel value(s) overflow float32 (largest magnitude 1e+300"),
    "0 slices": (_no_slices, "flat.nii.gz", "empty volume of shape (128, 128, 0): it has 0 slices"),
    "symlink loop": (_loop, "loop.nii.gz", "symlink loop"),
    "empty file": (_empty, "empty.nii.gz", "empty file (0 bytes)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inspect_prints_one_line_naming_file_and_problem(tmp_path, capfd, case):
    make, named, problem = CASES[case]
    path = make(tmp_path)
    capfd.readouterr()
    assert main(["inspect", str(path)]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no traceback, nothing printed by ITK or nibabel
    assert lines[0].startswith("error: ") and f"{named}: " in lines[0] and problem in lines[0], lines[0]
    assert "corrupt" not in lines[0]


def _ct(shape=(40, 40, 20), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 40.0)
    hu[: shape[0] // 2] = -850.0
    return Volume(hu + rng.normal(0, 20, shape), (1.5, 1.5, 2.0), metadata={"modality": "ct"})


def test_cubes_skips_an_rgb_nifti_and_a_symlink_loop_and_finishes_the_others(tmp_path, capfd):
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(3):
        write_volume(_ct(seed=i), scans / f"p{i}.nii.gz", dtype="int16")
    _rgb(scans)  # sorts after p0..p2: the run must go on past it and finish
    _loop(scans)  # a symlink loop is listed and skipped with its reason, not silently left out
    write_volume(_ct(seed=9), scans / "z9.nii.gz", dtype="int16")
    out = tmp_path / "cubes"
    code = main(["cubes", "--data", str(scans), "--out", str(out), "--quiet",
                 "cubes.cube_size=[16,16,8]", "cubes.cubes_per_scan=2", "cubes.content_test=none"])
    printed, err = capfd.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    assert f"warning: skipping scan {scans / 'rgb.nii.gz'}: {scans / 'rgb.nii.gz'}: RGB colour voxels" in err
    assert f"warning: skipping scan {scans / 'loop.nii.gz'}: {scans / 'loop.nii.gz'}: symlink loop" in err
    assert "from 4 scans" in printed and "skipped rgb/rgb.nii.gz: " in printed and "skipped loop/loop.nii.gz: " in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and "z9/z9.nii.gz" in manifest["completed_units"]


def test_inspect_shows_missing_dicom_slices_in_text_and_json(tmp_path, capfd):
    write_dicom_series(_ct((12, 10, 8)), tmp_path / "series")
    assert main(["inspect", str(tmp_path / "series"), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["uniform_slice_spacing"] is True

    (tmp_path / "series" / "slice_0003.dcm").unlink()
    with pytest.warns(UserWarning, match=r"the DICOM series has uneven slice positions, expected a step of 2 mm: "
                                         r"4 -> 8 mm is a step of 4 mm \(~1 slice\(s\) missing\)"):
        assert main(["inspect", str(tmp_path / "series"), "--json"]) == 0
    out, err = capfd.readouterr()
    info = json.loads(out)
    assert info["uniform_slice_spacing"] is False and info["shape"] == [12, 10, 7]
    assert info["slice_gaps"] == [{"from_mm": 4.0, "to_mm": 8.0, "step_mm": 4.0, "expected_mm": 2.0, "missing": 1}]
    assert err == ""  # ITK's own "Non uniform sampling or missing slices" warning is silenced

    with pytest.warns(UserWarning, match="uneven slice positions"):
        assert main(["inspect", str(tmp_path / "series")]) == 0
    text = capfd.readouterr().out
    assert "slices       NOT uniform (1 irregular step(s), ~1 slice(s) missing, expected 2 mm)" in text


def test_inspect_shows_hu_for_a_ct_slice_and_the_spacing_source(tmp_path, capfd):
    from pydicom.pixels import apply_modality_lut

    from semantic_genesis.io.images2d import Image2D, write_image2d

    write_image2d(Image2D(np.arange(30.0).reshape(5, 6), (0.5, 0.5)), tmp_path / "ct.dcm", bits=16, modality="CT",
                  window=(40, 400), attributes={"RescaleIntercept": "-1024", "RescaleSlope": "1"})
    assert main(["inspect", str(tmp_path / "ct.dcm"), "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    import pydicom

    ds = pydicom.dcmread(tmp_path / "ct.dcm")
    assert info["min"] == float(apply_modality_lut(ds.pixel_array, ds).min()) == -1024.0
    assert info["values"] == "modality" and info["units"] == "HU" and info["spacing_source"] == "PixelSpacing"
    assert main(["inspect", str(tmp_path / "ct.dcm")]) == 0
    text = capfd.readouterr().out
    assert "values       modality values in HU" in text and "(from PixelSpacing)" in text


def test_pretrain_refuses_an_interrupted_cube_set_naming_the_missing_scans(tmp_path, capfd, monkeypatch):
    from semantic_genesis import cubes as cubes_module

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(6):
        write_volume(_ct(seed=i), scans / f"p{i}.nii.gz", dtype="int16")
    out = tmp_path / "cubes"
    settings = ["cubes.cube_size=[16,16,8]", "cubes.cubes_per_scan=2", "cubes.content_test=none"]
    read_unit = cubes_module._unit_volume
    calls = []

    def killed_after_three(ref, cfg):
        calls.append(ref.patient_id)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C during the 4th scan
        return read_unit(ref, cfg)

    monkeypatch.setattr(cubes_module, "_unit_volume", killed_after_three)
    assert main(["cubes", "--data", str(scans), "--out", str(out), "--quiet", *settings]) == 130
    monkeypatch.undo()
    capfd.readouterr()

    run = tmp_path / "run"
    code = main(["pretrain", "method.name=models_genesis", f"data={out}", f"out={run}", "model.width=0.125", *settings,
                 "train.max_steps=2", "train.num_workers=0", "train.progress=false", "train.tensorboard=false"])
    err = capfd.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (
        f"error: {out}: the cube set is incomplete (its manifest says complete: false; 3 of 6 scans done; "
        f"missing: p3, p4, p5); complete it with `semantic-genesis cubes --data {scans} --out {out}` and the "
        "same config (the rerun resumes)"
    )
    assert not list(run.rglob("*.safetensors"))

    # the suggested command completes the set, and then it is accepted
    assert main(["cubes", "--data", str(scans), "--out", str(out), "--quiet", *settings]) == 0
    from semantic_genesis.io.shards import ShardedArray

    assert len(ShardedArray(out, kind="cubes")) == 12


def test_error_raised_in_a_dataloader_worker_is_reported_on_one_line():
    from torch.utils.data import DataLoader, Dataset

    from semantic_genesis.errors import DataError, error_line

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise DataError(f"/data/x.csv row {index + 2}: a bad value 7")

    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(Broken(), batch_size=1, num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # torch's re-raise carries the worker's traceback
    assert error_line(caught.value) == "/data/x.csv row 2: a bad value 7"
    assert error_line(DataError("plain: message")) == "plain: message"
