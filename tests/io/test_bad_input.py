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


def _raises_for(path, pattern, named, **kwargs):
    """Like ``_raises``, for an error that names another file than the one read (e.g. the .raw)."""
    with pytest.raises(ImageReadError, match=pattern) as info:
        read_volume(path, **kwargs)
    assert info.value.path.name == named
    return info.value


def test_mhd_with_short_raw_names_the_raw_and_both_byte_counts(tmp_path):
    write_volume(Volume(np.zeros((64, 64, 192))), tmp_path / "s.mhd")
    with open(tmp_path / "s.raw", "r+b") as handle:
        handle.truncate(1048576)
    _raises_for(
        tmp_path / "s.mhd",
        r"s\.raw: data file of s\.mhd is truncated: expected 3145728 bytes \(64 x 64 x 192 voxels of MET_FLOAT\), "
        r"found 1048576$",
        "s.raw",
    )


def test_mhd_with_missing_raw_names_the_raw(tmp_path):
    write_volume(_vol(), tmp_path / "m.mhd")
    (tmp_path / "m.raw").unlink()
    _raises_for(tmp_path / "m.mhd", r"m\.raw: data file of m\.mhd cannot be read: no such file or folder$", "m.raw")


def test_truncated_mha_says_how_many_bytes_are_missing(tmp_path):
    write_volume(_vol(), tmp_path / "t.mha", dtype="int16")
    data = (tmp_path / "t.mha").read_bytes()
    (tmp_path / "t.mha").write_bytes(data[:-100])
    _raises(tmp_path / "t.mha", r"truncated voxel data: expected 672 bytes after the header, found 572$")


def test_complex_nifti_is_refused_not_read_as_its_real_part(tmp_path):
    import nibabel as nib

    data = (np.ones((4, 5, 6)) * (1 + 2j)).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "c.nii.gz"))
    _raises(tmp_path / "c.nii.gz", r"c\.nii\.gz: complex-valued voxels \(NIfTI data type complex64\); expected real")
    np.save(tmp_path / "c.npy", data)
    _raises(tmp_path / "c.npy", r"complex-valued voxels \(complex64\)")


def test_rgb_nifti_is_one_line_image_read_error(tmp_path):
    import nibabel as nib

    rgb = np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    _raises(tmp_path / "rgb.nii.gz", r"RGB colour voxels \(NIfTI data type RGB\); expected a grayscale")
    np.save(tmp_path / "rgb.npy", rgb)
    _raises(tmp_path / "rgb.npy", r"RGB colour voxels")


def test_unsupported_nifti_dtype_is_named_not_called_corrupt(tmp_path):
    import struct

    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "ok.nii"))
    header = bytearray((tmp_path / "ok.nii").read_bytes())
    struct.pack_into("<h", header, 70, 1536)  # datatype field: float128
    (tmp_path / "f128.nii").write_bytes(bytes(header))
    err = _raises(tmp_path / "f128.nii", r"unsupported NIfTI data type 1536 \(float128\); expected an integer or floating")
    assert "corrupt" not in err.problem
    struct.pack_into("<h", header, 70, 999)
    (tmp_path / "x.nii").write_bytes(bytes(header))
    _raises(tmp_path / "x.nii", r"unknown NIfTI data type code 999")


def test_float64_beyond_float32_is_overflow_not_nan(tmp_path):
    import nibabel as nib

    data = np.zeros((4, 4, 4))
    data[1, 2, 3] = 1e300
    data[0, 0, 0] = -5e39
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "o.nii.gz"))
    pattern = r"2 voxel value\(s\) overflow float32 \(largest magnitude 1e\+300, float32 holds up to 3\.40282e\+38\)"
    _raises(tmp_path / "o.nii.gz", pattern)
    np.save(tmp_path / "o.npy", data)
    _raises(tmp_path / "o.npy", pattern, check_finite=False)


def test_zero_slices_is_reported_as_such(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((128, 128, 0), np.float32), np.eye(4)), str(tmp_path / "z.nii.gz"))
    _raises(tmp_path / "z.nii.gz", r"empty volume of shape \(128, 128, 0\): it has 0 slices$")
    np.save(tmp_path / "z.npy", np.zeros((128, 128, 0)))
    _raises(tmp_path / "z.npy", r"it has 0 slices$")
    np.save(tmp_path / "y.npy", np.zeros((5, 0, 4)))
    _raises(tmp_path / "y.npy", r"it has no voxels along Y$")
    (tmp_path / "z.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 128 128 0\nElementType = MET_SHORT\nElementDataFile = z.raw\n"
    )
    (tmp_path / "z.raw").write_bytes(b"")
    _raises(tmp_path / "z.mhd", r"it has 0 slices$")


def test_symlinks_that_loop_or_dangle_are_said_so(tmp_path):
    (tmp_path / "loop.nii.gz").symlink_to(tmp_path / "loop.nii.gz")
    _raises(tmp_path / "loop.nii.gz", r"loop\.nii\.gz: symlink loop")
    (tmp_path / "gone.nii.gz").symlink_to(tmp_path / "elsewhere.nii.gz")
    _raises(tmp_path / "gone.nii.gz", r"gone\.nii\.gz: broken symlink \(points to .*elsewhere\.nii\.gz")
    write_volume(_vol(), tmp_path / "d.mhd")
    (tmp_path / "d.raw").unlink()
    (tmp_path / "d.raw").symlink_to(tmp_path / "d.raw")
    _raises_for(tmp_path / "d.mhd", r"d\.raw: data file of d\.mhd cannot be read: symlink loop", "d.raw")
    with pytest.raises(ImageReadError, match=r"loop\.png: symlink loop"):
        (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
        read_image2d(tmp_path / "loop.png")


def test_empty_files_are_said_to_be_empty(tmp_path):
    for name in ("e.nii", "e.nii.gz", "e.npy", "e.mhd", "e.nrrd"):
        (tmp_path / name).write_bytes(b"")
        _raises(tmp_path / name, r"empty file \(0 bytes\)")
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"e\.png: empty file \(0 bytes\); expected a 2D image"):
        read_image2d(tmp_path / "e.png")


def test_2d_files_where_a_volume_is_expected_and_the_reverse(tmp_path):
    write_image2d(Image2D(np.zeros((6, 7))), tmp_path / "x.png")
    _raises(tmp_path / "x.png", r"x\.png: is a 2D image \(\.png\); expected a 3D volume")
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 7), np.int16)), str(tmp_path / "flat.mha"))
    _raises(tmp_path / "flat.mha", r"expected a 3D volume, got a 2D image of shape \(7, 6\)")
    np.save(tmp_path / "flat.npy", np.zeros((6, 7)))
    _raises(tmp_path / "flat.npy", r"expected a 3D volume, got a 2D image of shape \(6, 7\)")
    write_volume(_vol(), tmp_path / "v.nii.gz")
    with pytest.raises(ImageReadError, match=r"v\.nii\.gz: is a 3D volume format; expected a 2D image file"):
        read_image2d(tmp_path / "v.nii.gz")


def test_npy_of_python_objects(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[[1]], [["a"]]], dtype=object), allow_pickle=True)
    _raises(tmp_path / "o.npy", r"unsupported voxel type object; expected integer or floating-point values")


def test_vector_and_complex_metaimages(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True), str(tmp_path / "v.mha"))
    _raises(tmp_path / "v.mha", r"expected a scalar 3D volume, got 3 components per voxel .*RGB colour\?")


def test_folder_named_like_a_volume_file(tmp_path):
    (tmp_path / "scan.nii.gz").mkdir()
    _raises(tmp_path / "scan.nii.gz", r"is a folder, not a \.nii\.gz file, and holds no DICOM series")


def test_itk_and_nibabel_print_nothing_of_their_own(tmp_path, capfd):
    import nibabel as nib

    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", r"no DICOM series found")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "ok.nii"))
    header = bytearray((tmp_path / "ok.nii").read_bytes())
    header[70:72] = (1536).to_bytes(2, "little")
    (tmp_path / "f128.nii").write_bytes(bytes(header))
    _raises(tmp_path / "f128.nii", r"unsupported NIfTI data type")
    write_volume(_vol(), tmp_path / "m.mhd")
    (tmp_path / "m.raw").unlink()
    _raises_for(tmp_path / "m.mhd", r"m\.raw", "m.raw")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


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


def test_dicom_series_with_an_unreadable_slice_file_warns_naming_it(tmp_path):
    import warnings

    vol = Volume(np.rint(np.random.default_rng(1).normal(0, 100, (32, 32, 6))), (0.7, 0.7, 2.0))
    write_dicom_series(vol, tmp_path / "s")
    cut = tmp_path / "s" / "slice_0002.dcm"
    with open(cut, "r+b") as handle:
        handle.truncate(cut.stat().st_size - 1000)  # header intact, pixel data cut
    (tmp_path / "s" / "notes.txt").write_text("not a slice")  # not DICOM: ignored silently
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = read_volume(tmp_path / "s")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert messages[0] == f"{tmp_path / 's'}: 1 DICOM file(s) could not be read and were left out of the series: slice_0002.dcm"
    assert "the DICOM series has uneven slice positions, expected a step of 2 mm: 2 -> 6 mm is a step of 4 mm " \
           "(~1 slice(s) missing); the volume uses the averaged slice spacing 2.5 mm" in messages[1]
    assert back.shape == (32, 32, 5) and back.metadata["uniform_slice_spacing"] is False
    assert back.spacing[2] == pytest.approx(2.5)


def test_dicom_series_with_uneven_steps_lists_each_gap():
    from semantic_genesis.io.volumes import slice_gaps

    assert slice_gaps([0.0, 1.0, 2.0, 3.0]) == []
    gaps = slice_gaps([0.0, 1.0, 2.0, 5.0, 6.0, 6.5, 7.5])
    assert [(g["from_mm"], g["to_mm"], g["missing"]) for g in gaps] == [(2.0, 5.0, 2), (6.0, 6.5, 0)]
    assert all(g["expected_mm"] == 1.0 for g in gaps)


def test_dicom_series_with_two_files_at_one_position_is_refused_naming_them(tmp_path):
    import pydicom

    write_dicom_series(_vol((8, 8, 5)), tmp_path / "dup")
    ds = pydicom.dcmread(tmp_path / "dup" / "slice_0002.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    ds.save_as(tmp_path / "dup" / "copy.dcm")
    _raises(tmp_path / "dup", r"dup: slice files copy\.dcm and slice_0002\.dcm share the position 7 mm; the folder mixes "
                              r"acquisitions or holds copies: keep one file per slice position$")


def test_dicom_series_with_slices_of_different_sizes_names_them(tmp_path):
    import pydicom

    write_dicom_series(_vol((16, 16, 4)), tmp_path / "s")
    write_dicom_series(Volume(np.zeros((8, 8, 1)), origin=(1.0, 2.0, 11.0)), tmp_path / "other")
    odd = pydicom.dcmread(tmp_path / "other" / "slice_0000.dcm")
    odd.SeriesInstanceUID = pydicom.dcmread(tmp_path / "s" / "slice_0000.dcm").SeriesInstanceUID
    odd.save_as(tmp_path / "s" / "odd.dcm")
    _raises(tmp_path / "s", r"s: the slices of one series have different sizes \(rows x columns\): 16x16 in 4 file\(s\) "
                            r"\(slice_0000\.dcm, slice_0001\.dcm, slice_0002\.dcm, \.\.\.\); 8x8 in 1 file\(s\) \(odd\.dcm\)$")


def test_uncompressed_nifti_named_nii_gz(tmp_path):
    write_volume(_vol(), tmp_path / "plain.nii")
    (tmp_path / "plain.nii").rename(tmp_path / "plain.nii.gz")
    _raises(tmp_path / "plain.nii.gz", r"named \.nii\.gz but not gzip-compressed; it is a plain NIfTI file: rename it to \.nii$")
    (tmp_path / "junk.nii.gz").write_bytes(b"hello world")
    _raises(tmp_path / "junk.nii.gz", r"named \.nii\.gz but not gzip-compressed \(corrupt or not a NIfTI file\)$")


def test_scan_folders_a_new_user_points_at(tmp_path):
    from semantic_genesis.errors import DatasetLayoutError
    from semantic_genesis.io.datasets import list_scans

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"empty: no scans found: the folder is empty"):
        list_scans(tmp_path / "empty")
    (tmp_path / "gone").symlink_to(tmp_path / "unmounted")
    with pytest.raises(DatasetLayoutError, match=r"gone: broken symlink \(points to .*unmounted"):
        list_scans(tmp_path / "gone")
    # .mha volumes are listed (read_volume reads them); a looping symlink is listed so its read names it
    mixed = tmp_path / "mixed"
    write_volume(_vol(), mixed / "a.mha")
    (mixed / "b.nii.gz").symlink_to(mixed / "b.nii.gz")
    assert [r.patient_id for r in list_scans(mixed)] == ["a", "b"]
    _raises(mixed / "b.nii.gz", r"symlink loop")
    # a folder of .dcm slices given directly is one DICOM series
    write_dicom_series(_vol(), tmp_path / "series")
    (ref,) = list_scans(tmp_path / "series")
    assert ref.path == tmp_path / "series" and read_volume(ref.path).shape == (6, 7, 8)


def test_a_second_series_in_the_folder_is_not_reported_as_unreadable(tmp_path, recwarn):
    vol = _vol()
    write_dicom_series(vol, tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(vol, tmp_path / "b", series_uid="1.2.3.2", file_names=[f"b{k}.dcm" for k in range(8)])
    for f in (tmp_path / "b").iterdir():
        f.rename(tmp_path / "a" / f.name)
    assert read_volume(tmp_path / "a", series_id="1.2.3.2").shape == (6, 7, 8)
    assert not [w for w in recwarn if "could not be read" in str(w.message)]
