"""Bad input: every failure is an ImageReadError naming the file and the problem; the CLI prints it."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from semantic_genesis.errors import ImageReadError
from semantic_genesis.io.images2d import Image2D, read_image2d, write_image2d
from semantic_genesis.io.volumes import Volume, read_volume, write_dicom_series, write_volume


def _vol(shape=(6, 7, 8)) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(np.rint(rng.normal(0, 50, size=shape)), (1.0, 1.5, 2.0), (1.0, 2.0, 3.0))


def _raises(path, pattern, **kwargs):
    with pytest.raises(ImageReadError, match=pattern) as info:
        read_volume(path, **kwargs)
    assert info.value.path.name == path.name
    return info.value


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.nii.gz", r"nope\.nii\.gz: no such file or folder")


def test_unsupported_extension(tmp_path):
    (tmp_path / "scan.xyz").write_bytes(b"hello")
    _raises(tmp_path / "scan.xyz", r"unsupported volume format '\.xyz'; expected one of \.nii")


def test_truncated_nifti_gz(tmp_path):
    write_volume(_vol((30, 30, 30)), tmp_path / "full.nii.gz")
    data = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "cut.nii.gz", r"cut\.nii\.gz: corrupt or truncated NIfTI file")


def test_garbage_nifti(tmp_path):
    (tmp_path / "junk.nii").write_bytes(b"\x00" * 10)
    _raises(tmp_path / "junk.nii", r"corrupt or truncated NIfTI file")


def test_mhd_with_short_raw(tmp_path):
    write_volume(_vol(), tmp_path / "s.mhd")
    raw = (tmp_path / "s.raw").read_bytes()
    (tmp_path / "s.raw").write_bytes(raw[:50])
    err = _raises(tmp_path / "s.mhd", r"s\.mhd: corrupt or truncated file")
    assert "not read completely" in err.problem or "cannot be read" in err.problem


def test_four_d_volume(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.float32), np.eye(4)), str(tmp_path / "t.nii.gz"))
    _raises(tmp_path / "t.nii.gz", r"expected a 3D volume, got a 4D image of shape \(4, 5, 6, 3\)")
    # A trailing singleton 4th dimension is accepted as 3D.
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.float32), np.eye(4)), str(tmp_path / "s.nii.gz"))
    assert read_volume(tmp_path / "s.nii.gz").shape == (4, 5, 6)
    np.save(tmp_path / "t.npy", np.zeros((2, 3)))
    _raises(tmp_path / "t.npy", r"expected a 3D volume, got a 2D image")


def test_empty_dicom_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", r"no DICOM series found in this folder \(0 file\(s\)\)")
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    _raises(tmp_path / "empty", r"\(1 file\(s\)\)")


def test_folder_with_two_series_lists_ids(tmp_path):
    vol = _vol()
    write_dicom_series(vol, tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(vol, tmp_path / "b", series_uid="1.2.3.2", file_names=[f"b{k}.dcm" for k in range(8)])
    for f in (tmp_path / "b").iterdir():
        f.rename(tmp_path / "a" / f.name)
    _raises(tmp_path / "a", r"holds 2 DICOM series; pass series_id= one of: 1\.2\.3\.1, 1\.2\.3\.2")
    _raises(tmp_path / "a", r"no DICOM series '9\.9'; found: 1\.2\.3\.1, 1\.2\.3\.2", series_id="9.9")


def test_nan_and_inf_voxels(tmp_path):
    vol = _vol()
    arr = vol.array.copy()
    arr[0, 0, 0] = np.nan
    arr[1, 1, 1] = np.inf
    for name in ("n.nii.gz", "n.nrrd", "n.npy"):
        write_volume(vol.with_array(arr), tmp_path / name)
        _raises(tmp_path / name, r"2 voxel\(s\) are NaN or infinite; expected finite values")
    assert np.isnan(read_volume(tmp_path / "n.npy", check_finite=False).array[0, 0, 0])


def test_corrupt_npy_and_sidecar(tmp_path):
    (tmp_path / "c.npy").write_bytes(b"\x93NUMPY garbage")
    _raises(tmp_path / "c.npy", r"corrupt or truncated \.npy file")
    np.save(tmp_path / "g.npy", np.zeros((2, 2, 2)))
    (tmp_path / "g.json").write_text('{"spacing": [1, 2]}')
    with pytest.raises(ImageReadError, match=r"g\.json: invalid geometry in sidecar: .*spacing must be 3"):
        read_volume(tmp_path / "g.npy")


def test_not_gzip_nifti(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(gzip.compress(b"\x01" * 100)[:20])
    _raises(tmp_path / "x.nii.gz", r"corrupt or truncated NIfTI")


def test_bad_2d_inputs(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        read_image2d(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ImageReadError, match=r"bad\.png: unreadable or corrupt image"):
        read_image2d(tmp_path / "bad.png")
    write_image2d(Image2D(np.arange(400).reshape(20, 20) % 256), tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: unreadable or corrupt image"):
        read_image2d(tmp_path / "cut.png")
    (tmp_path / "x.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageReadError, match=r"x\.dcm: unreadable or corrupt DICOM file"):
        read_image2d(tmp_path / "x.dcm")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageReadError, match=r"unsupported 2D image format '\.gif'"):
        read_image2d(tmp_path / "x.gif")
