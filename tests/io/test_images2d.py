"""2D image IO: PNG 8/16-bit, JPEG, DICOM (MONOCHROME1 inversion, rescale, VOI window), spacing."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.errors import DataError
from semantic_genesis.io.images2d import Image2D, read_image2d, write_image2d


def _image(bits: int) -> Image2D:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 2**bits - 1, size=(13, 21)).astype(np.float32)  # H != W, max 2**bits - 2
    arr[2, 17] = 2**bits - 1  # marker: the only brightest pixel, off-centre
    return Image2D(arr, (0.25, 0.5))


@pytest.mark.parametrize("name,bits", [("a.png", 8), ("a.png", 16), ("a.dcm", 8), ("a.dcm", 16)])
def test_integer_images_round_trip_exactly(tmp_path, name, bits):
    img = _image(bits)
    write_image2d(img, tmp_path / name, bits=bits)
    back = read_image2d(tmp_path / name)
    assert back.shape == (13, 21)
    np.testing.assert_array_equal(back.array, img.array)
    assert np.unravel_index(np.argmax(back.array), back.shape) == (2, 17)
    np.testing.assert_allclose(back.spacing, (0.25, 0.5), rtol=1e-4)
    assert back.metadata["dtype"] == ("uint8" if bits == 8 else "uint16")
    assert back.metadata["spacing_known"] is True


def test_unit_images_are_scaled_to_full_range(tmp_path):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    write_image2d(Image2D(arr), tmp_path / "u.png", bits=16)
    np.testing.assert_array_equal(read_image2d(tmp_path / "u.png").array, np.rint(arr * 65535))
    write_image2d(Image2D(arr * 500 - 200), tmp_path / "r.png", bits=8, value_range=(-200, 300))
    np.testing.assert_array_equal(read_image2d(tmp_path / "r.png").array, np.rint(arr * 255))
    with pytest.raises(DataError, match=r"values \[-200, 300\] are neither in \[0, 1\]"):
        write_image2d(Image2D(arr * 500 - 200), tmp_path / "x.png")


def test_jpeg_is_close(tmp_path):
    x = np.add.outer(np.arange(32), np.arange(48)).astype(np.float32) * 2  # smooth ramp, 0..156
    write_image2d(Image2D(x), tmp_path / "a.jpg", bits=8)
    back = read_image2d(tmp_path / "a.jpg")
    assert back.shape == (32, 48) and back.metadata["format"] == "jpeg"
    assert np.abs(back.array - x).mean() < 2.0


def test_monochrome1_reads_inverted_to_bright_is_high(tmp_path):
    import pydicom

    img = _image(16)
    write_image2d(img, tmp_path / "m1.dcm", bits=16, photometric="MONOCHROME1", modality="CR")
    ds = pydicom.dcmread(tmp_path / "m1.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_array_equal(ds.pixel_array, 65535 - img.array)  # stored inverted
    back = read_image2d(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(back.array, img.array)  # read back as MONOCHROME2
    assert back.metadata["photometric"] == "MONOCHROME1"
    assert back.metadata["modality"] == "xray"


def test_rescale_and_voi_window_follow_the_dicom_standard(tmp_path):
    import pydicom

    img = _image(16)
    write_image2d(img, tmp_path / "w.dcm", bits=16, window=(30000, 20001))
    # Add a rescale so that the modality LUT matters too.
    ds = pydicom.dcmread(tmp_path / "w.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-100"
    ds.save_as(tmp_path / "w.dcm")
    back = read_image2d(tmp_path / "w.dcm")
    x = img.array.astype(np.float64) * 2 - 100
    c, w = 30000 - 0.5, 20001 - 1
    y_min, y_max = -100.0, 65535 * 2 - 100.0
    expected = np.where(
        x <= c - w / 2, y_min, np.where(x > c + w / 2, y_max, ((x - c) / w + 0.5) * (y_max - y_min) + y_min)
    )
    np.testing.assert_allclose(back.array, expected, rtol=1e-6, atol=1e-2)
    assert back.metadata["voi_applied"] is True
    raw = read_image2d(tmp_path / "w.dcm", apply_voi=False)
    np.testing.assert_allclose(raw.array, x)


def test_dicom_attributes_override_and_png_colour_is_luminance(tmp_path):
    from PIL import Image

    img = _image(8)
    write_image2d(img, tmp_path / "s.dcm", modality="CR", attributes={"SOPInstanceUID": "1.2.3.4.5", "PatientID": "P7"})
    back = read_image2d(tmp_path / "s.dcm")
    assert back.metadata["SOPInstanceUID"] == "1.2.3.4.5" and back.metadata["PatientID"] == "P7"
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[..., 1] = 100
    rgba[..., 2] = 100
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image2d(tmp_path / "c.png").array, 100)


# --------------------------------------------------------------------------------------------------
# DICOM files written here with pydicom alone (not our writer), so the reader is checked against
# pydicom's own LUT functions and SimpleITK.
# --------------------------------------------------------------------------------------------------
def _hu_slice(signed: bool = True) -> np.ndarray:
    rng = np.random.default_rng(7)
    hu = rng.integers(-3024, 1469, size=(24, 20))
    hu[0, 0], hu[0, 1] = -3024, 1468  # the range of a real CT slice (air outside the FOV .. bone)
    return hu if signed else np.clip(hu, -1024, None)


def _write_dicom(path, stored: np.ndarray, modality: str, signed: bool, **elements) -> None:
    """A single-frame MONOCHROME2 slice: 16 bits allocated, 14 stored, rescale -1024, a window."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 14, 13
    ds.PixelRepresentation = int(signed)
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.PixelSpacing = ["0.7", "0.7"]
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("signed", [True, False])
def test_ct_and_mr_slices_keep_modality_values_like_pydicom_and_simpleitk(tmp_path, modality, signed):
    import pydicom
    import SimpleITK as sitk
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    hu = _hu_slice(signed)
    _write_dicom(tmp_path / "s.dcm", hu + 1024, modality, signed)
    image = read_image2d(tmp_path / "s.dcm")
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    np.testing.assert_array_equal(image.array, apply_modality_lut(ds.pixel_array, ds))
    np.testing.assert_array_equal(image.array, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s.dcm")))[0])
    np.testing.assert_array_equal(image.array, hu)
    assert (image.array.min(), image.array.max()) == (hu.min(), 1468)
    assert image.metadata["values"] == "modality" and image.metadata["voi_applied"] is False
    assert image.metadata.get("units") == ("HU" if modality == "CT" else None)
    # Before: the window was applied, giving -9216..7167 for the signed CT slice.
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    assert not np.array_equal(windowed, image.array)
    forced = read_image2d(tmp_path / "s.dcm", apply_voi=True)
    np.testing.assert_allclose(forced.array, windowed)
    assert forced.metadata["values"] == "voi"


@pytest.mark.parametrize("modality", ["CR", "DX", "MG"])
def test_projection_radiographs_get_their_voi_window(tmp_path, modality):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    stored = _hu_slice(False) + 1024
    _write_dicom(tmp_path / "x.dcm", stored, modality, False)
    image = read_image2d(tmp_path / "x.dcm")
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    np.testing.assert_allclose(image.array, apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds), rtol=1e-6)
    assert image.metadata["values"] == "voi" and image.metadata["voi_applied"] is True
    assert image.metadata["modality"] == ("mg" if modality == "MG" else "xray")
    raw = read_image2d(tmp_path / "x.dcm", apply_voi=False)
    np.testing.assert_array_equal(raw.array, stored - 1024)
    assert raw.metadata["values"] == "modality"


def test_zero_pixel_spacing_falls_back_to_imager_pixel_spacing(tmp_path, recwarn):
    stored = _hu_slice(False) + 1024
    _write_dicom(tmp_path / "cr.dcm", stored, "CR", False, PixelSpacing=["0.000", "0.000"],
                 ImagerPixelSpacing=["0.139", "0.14"])
    image = read_image2d(tmp_path / "cr.dcm")
    assert image.spacing == pytest.approx((0.139, 0.14))
    assert image.metadata["spacing_known"] is True and image.metadata["spacing_source"] == "ImagerPixelSpacing"
    assert not [w for w in recwarn if "spacing" in str(w.message)]


def test_zero_spacing_everywhere_is_unknown_with_a_warning_not_an_error(tmp_path):
    stored = _hu_slice(False) + 1024
    _write_dicom(tmp_path / "cr.dcm", stored, "CR", False, PixelSpacing=["0.000", "0.000"])
    with pytest.warns(UserWarning, match=r"cr\.dcm: PixelSpacing 0\.000\\0\.000 is not two positive numbers; "
                                         r"pixel spacing unknown, \(1, 1\) mm assumed"):
        image = read_image2d(tmp_path / "cr.dcm")
    assert image.spacing == (1.0, 1.0) and image.metadata["spacing_known"] is False
    assert image.metadata["spacing_source"] is None and image.shape == stored.shape
    _write_dicom(tmp_path / "none.dcm", stored, "CR", False, PixelSpacing=None)
    image = read_image2d(tmp_path / "none.dcm")  # no spacing at all: unknown, quietly (like most PNGs)
    assert image.metadata["spacing_known"] is False


def test_bad_2d_dicom_files_get_one_line_errors(tmp_path):
    from semantic_genesis.errors import ImageReadError

    stored = _hu_slice(False) + 1024
    _write_dicom(tmp_path / "mf.dcm", np.stack([stored, stored]), "CT", False, NumberOfFrames=2)
    with pytest.raises(ImageReadError, match=r"mf\.dcm: multi-frame DICOM \(2 frames\); expected a single 2D image"):
        read_image2d(tmp_path / "mf.dcm")
    _write_dicom(tmp_path / "rgb.dcm", np.repeat(stored[..., None], 3, axis=-1), "XC", False, SamplesPerPixel=3,
                 PhotometricInterpretation="RGB", PlanarConfiguration=0, Rows=stored.shape[0], Columns=stored.shape[1])
    with pytest.raises(ImageReadError, match=r"rgb\.dcm: colour DICOM \(3 samples per pixel, RGB\); expected a grayscale"):
        read_image2d(tmp_path / "rgb.dcm")
    _write_dicom(tmp_path / "cut.dcm", stored, "CR", False)
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-200])
    with pytest.raises(ImageReadError, match=r"cut\.dcm: unreadable DICOM pixel data"):
        read_image2d(tmp_path / "cut.dcm")


def test_a_dicom_without_pixels_is_named(tmp_path):
    import pydicom

    from semantic_genesis.errors import ImageReadError

    _write_dicom(tmp_path / "sr.dcm", _hu_slice(False) + 1024, "SR", False)
    ds = pydicom.dcmread(tmp_path / "sr.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "sr.dcm")
    with pytest.raises(ImageReadError, match=r"sr\.dcm: DICOM file has no pixel data"):
        read_image2d(tmp_path / "sr.dcm")
