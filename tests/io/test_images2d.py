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
