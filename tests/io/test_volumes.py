"""Volume IO: geometry, round trips for every format, DICOM series details, independent readers."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.io.volumes import Volume, orientation_code, read_volume, write_dicom_series, write_volume

MARKER = (2, 5, 8)


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def asymmetric_volume(integer: bool = False) -> Volume:
    """Different size per axis, anisotropic spacing, non-zero origin, rotated direction, a marker voxel."""
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 100.0, size=(7, 9, 11))
    if integer:
        array = np.rint(array)
    array[MARKER] = 3000.0
    direction = _rotation(0.3) @ np.diag([1.0, -1.0, -1.0])  # proper rotation, not axis aligned
    return Volume(array, (0.7, 0.9, 2.5), (-10.0, 20.5, -300.0), tuple(direction.ravel()), {"modality": "ct"})


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.mhd", "v.mha", "v.nrrd", "v.npy", "series"])
def test_round_trip_every_format(tmp_path, name):
    vol = asymmetric_volume(integer=name == "series")
    write_volume(vol, tmp_path / name)
    back = read_volume(tmp_path / name)
    assert back.shape == (7, 9, 11)
    assert back.array.dtype == np.float32
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert back.orientation_code == vol.orientation_code
    assert np.unravel_index(np.argmax(back.array), back.shape) == MARKER
    np.testing.assert_allclose(back.array, vol.array, atol=1e-3)
    np.testing.assert_allclose(back.voxel_to_world(MARKER), vol.voxel_to_world(MARKER), atol=1e-4)
    assert back.metadata["modality"] == "ct"
    assert back.metadata["path"] == str(tmp_path / name)


def test_mhd_writes_raw_beside_header_and_no_temporaries(tmp_path):
    write_volume(asymmetric_volume(), tmp_path / "scan.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.mhd", "scan.raw"]
    assert "ElementDataFile = scan.raw" in (tmp_path / "scan.mhd").read_text()


def test_integer_dtype_is_stored_and_reported(tmp_path):
    vol = asymmetric_volume()
    for name, dtype in [("ct.nii.gz", "int16"), ("lab.mhd", "uint8"), ("c.npy", "int16")]:
        src = vol if dtype != "uint8" else vol.with_array(np.clip(np.abs(vol.array), 0, 255))
        write_volume(src, tmp_path / name, dtype=dtype)
        back = read_volume(tmp_path / name)
        assert back.metadata["dtype"] == dtype
        np.testing.assert_array_equal(back.array, np.rint(src.array))
    with pytest.raises(Exception, match=r"do not fit dtype uint8"):
        write_volume(vol, tmp_path / "bad.nii.gz", dtype="uint8")


def test_voxel_world_round_trip_and_luna_formula():
    vol = asymmetric_volume()
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-5, 20, size=(50, 3))
    xyz = vol.voxel_to_world(ijk)
    d = np.asarray(vol.direction).reshape(3, 3)
    expected = np.asarray(vol.origin) + (d @ (np.asarray(vol.spacing)[:, None] * ijk.T)).T
    np.testing.assert_allclose(xyz, expected, atol=1e-9)
    np.testing.assert_allclose(vol.world_to_voxel(xyz), ijk, atol=1e-9)
    assert vol.voxel_to_world((0, 0, 0)).shape == (3,)
    np.testing.assert_allclose(vol.voxel_to_world((0, 0, 0)), vol.origin)
    # Axis-aligned LPS: one voxel step along Z moves spacing_z mm in world z.
    simple = Volume(np.zeros((2, 2, 2)), (1, 2, 3), (5, 6, 7))
    np.testing.assert_allclose(simple.voxel_to_world((1, 1, 1)), (6, 8, 10))


def test_orientation_code_matches_simpleitk():
    import SimpleITK as sitk

    flt = sitk.DICOMOrientImageFilter()
    perm = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    cases = [np.eye(3), np.diag([-1.0, -1.0, 1.0]), _rotation(0.3) @ np.diag([1.0, -1.0, -1.0]), perm, -perm]
    for d in cases:
        assert orientation_code(d.ravel()) == flt.GetOrientationFromDirectionCosines(d.ravel().tolist())
    assert orientation_code(np.eye(3).ravel()) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0]).ravel()) == "RAS"


def test_nifti_matches_nibabel_ras_affine(tmp_path):
    import nibabel as nib

    vol = asymmetric_volume()
    write_volume(vol, tmp_path / "v.nii.gz")
    img = nib.load(str(tmp_path / "v.nii.gz"))
    ras = img.affine @ np.array([*MARKER, 1.0])
    lps = vol.voxel_to_world(MARKER)
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)
    assert img.get_fdata()[MARKER] == pytest.approx(3000.0)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1


def test_mhd_matches_simpleitk(tmp_path):
    import SimpleITK as sitk

    vol = asymmetric_volume()
    write_volume(vol, tmp_path / "v.mhd")
    img = sitk.ReadImage(str(tmp_path / "v.mhd"))
    assert img.GetSize() == vol.shape
    arr = sitk.GetArrayFromImage(img)  # (Z, Y, X)
    assert arr[MARKER[2], MARKER[1], MARKER[0]] == pytest.approx(3000.0)
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(MARKER), vol.voxel_to_world(MARKER), atol=1e-4)


def test_dicom_series_stored_unsigned_with_intercept_reads_hu_in_position_order(tmp_path):
    import pydicom

    vol = asymmetric_volume(integer=True)
    nz = vol.shape[2]
    # Reverse naming: slice k is written to a file whose name sorts last for k = 0.
    names = [f"img_{nz - 1 - k:03d}.dcm" for k in range(nz)]
    write_dicom_series(vol, tmp_path / "dcm", rescale_intercept=-1024, file_names=names)
    ds = pydicom.dcmread(tmp_path / "dcm" / names[MARKER[2]])
    assert ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) == -1024.0
    stored = ds.pixel_array  # (rows = Y, cols = X), before rescale
    assert stored.dtype == np.uint16
    assert int(stored[MARKER[1], MARKER[0]]) == 3000 + 1024
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient], vol.voxel_to_world((0, 0, MARKER[2])), atol=1e-4
    )
    back = read_volume(tmp_path / "dcm")
    np.testing.assert_array_equal(back.array, vol.array)  # HU, in position order despite the names
    assert back.metadata["dtype"] == "uint16"
    assert back.metadata["rescale_intercept"] == -1024.0
    assert back.metadata["modality"] == "ct"


def test_dicom_two_series_readable_by_id(tmp_path):
    a = asymmetric_volume(integer=True)
    b = a.with_array(a.array + 10)
    write_dicom_series(a, tmp_path / "d", series_uid="1.2.3.4", file_names=[f"a{k}.dcm" for k in range(11)])
    # Second series into the same folder (the writer refuses non-empty folders, so copy files in).
    write_dicom_series(b, tmp_path / "tmp", series_uid="1.2.3.5", file_names=[f"b{k}.dcm" for k in range(11)])
    for f in (tmp_path / "tmp").iterdir():
        f.rename(tmp_path / "d" / f.name)
    back = read_volume(tmp_path / "d", series_id="1.2.3.5")
    np.testing.assert_array_equal(back.array, b.array)
    assert back.metadata["series_id"] == "1.2.3.5"


def test_writer_refuses_non_empty_dicom_folder(tmp_path):
    vol = asymmetric_volume(integer=True)
    write_dicom_series(vol, tmp_path / "d")
    with pytest.raises(Exception, match=r"already holds 11 \.dcm"):
        write_dicom_series(vol, tmp_path / "d")
    write_dicom_series(vol.with_array(vol.array + 1), tmp_path / "d", overwrite=True)
    assert read_volume(tmp_path / "d").array.max() == 3001.0


def test_plain_npy_without_sidecar_has_unit_geometry(tmp_path):
    arr = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", arr)
    vol = read_volume(tmp_path / "x.npy")
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.origin == (0.0, 0.0, 0.0)
    assert vol.metadata["sidecar"] is False and vol.metadata["dtype"] == "float64"
    np.testing.assert_array_equal(vol.array, arr)


def test_dicom_series_flags_missing_slices(tmp_path):
    vol = asymmetric_volume(integer=True)
    write_dicom_series(vol, tmp_path / "d")
    assert read_volume(tmp_path / "d").metadata["uniform_slice_spacing"] is True
    (tmp_path / "d" / "slice_0005.dcm").unlink()
    with pytest.warns(UserWarning, match=r"uneven slice positions, expected a step of 2\.5 mm: 310 -> 315 mm"):
        back = read_volume(tmp_path / "d")
    assert back.shape == (7, 9, 10)
    assert back.metadata["uniform_slice_spacing"] is False
    assert back.metadata["slice_gaps"] == [
        {"from_mm": 310.0, "to_mm": 315.0, "step_mm": 5.0, "expected_mm": 2.5, "missing": 1}
    ]
