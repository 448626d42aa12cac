"""``semantic-genesis inspect``: JSON values match independent readers; PNG output; clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.io.images2d import Image2D, write_image2d
from semantic_genesis.io.volumes import Volume, write_dicom_series, write_volume

PCTS = (1, 5, 50, 95, 99)


def _volume() -> Volume:
    rng = np.random.default_rng(11)
    arr = np.rint(rng.normal(-200, 300, size=(9, 6, 5)))
    arr[1, 4, 3] = 2500
    return Volume(arr, (0.6, 0.8, 2.0), (5.0, -7.0, 100.0), metadata={"modality": "ct"})


def _inspect_json(capsys, *args) -> dict:
    assert main(["inspect", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_stats(info: dict, shape, spacing, values: np.ndarray) -> None:
    assert info["shape"] == list(shape)
    np.testing.assert_allclose(info["spacing"], spacing, rtol=1e-6)
    values = values.astype(np.float64)
    assert info["min"] == pytest.approx(values.min())
    assert info["max"] == pytest.approx(values.max())
    assert info["mean"] == pytest.approx(values.mean(), rel=1e-6)
    expected = np.percentile(values, PCTS)
    np.testing.assert_allclose([info["percentiles"][str(p)] for p in PCTS], expected, rtol=1e-6, atol=1e-6)


def test_nifti_matches_simpleitk(tmp_path, capsys):
    import SimpleITK as sitk

    write_volume(_volume(), tmp_path / "v.nii.gz", dtype="int16")
    info = _inspect_json(capsys, tmp_path / "v.nii.gz")
    img = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    _check_stats(info, img.GetSize(), img.GetSpacing(), sitk.GetArrayFromImage(img))
    np.testing.assert_allclose(info["origin"], img.GetOrigin(), atol=1e-4)
    assert info["dtype"] == "int16" and info["orientation"] == "LPS" and info["modality"] == "ct"


def test_mhd_matches_hand_parsed_header_and_raw(tmp_path, capsys):
    write_volume(_volume(), tmp_path / "v.mhd", dtype="int16")
    header = dict(
        line.split(" = ", 1) for line in (tmp_path / "v.mhd").read_text().splitlines() if " = " in line
    )
    dims = [int(v) for v in header["DimSize"].split()]
    assert header["ElementType"] == "MET_SHORT"
    raw = np.fromfile(tmp_path / header["ElementDataFile"], dtype="<i2")
    info = _inspect_json(capsys, tmp_path / "v.mhd")
    _check_stats(info, dims, [float(v) for v in header["ElementSpacing"].split()], raw)
    np.testing.assert_allclose(info["origin"], [float(v) for v in header["Offset"].split()])
    assert info["modality"] == "ct"  # written by us into the header


def test_dicom_series_matches_pydicom(tmp_path, capsys):
    import pydicom

    vol = _volume()
    write_dicom_series(vol, tmp_path / "series")
    slices = [pydicom.dcmread(p) for p in sorted((tmp_path / "series").glob("*.dcm"))]
    hu = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in slices])
    info = _inspect_json(capsys, tmp_path / "series")
    first = slices[0]
    spacing = (float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), float(first.SliceThickness))
    shape = (int(first.Columns), int(first.Rows), len(slices))
    _check_stats(info, shape, spacing, hu)
    assert info["modality"] == "ct" and info["dtype"] == "uint16" and info["num_files"] == 5


def test_dicom_2d_and_png_match_pydicom_and_pillow(tmp_path, capsys):
    import pydicom
    from PIL import Image

    rng = np.random.default_rng(5)
    img = Image2D(rng.integers(0, 4000, size=(12, 17)).astype(np.float32), (0.3, 0.4))
    write_image2d(img, tmp_path / "x.dcm", bits=16, modality="CR")
    info = _inspect_json(capsys, tmp_path / "x.dcm")
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    _check_stats(info, (ds.Rows, ds.Columns), [float(v) for v in ds.PixelSpacing], ds.pixel_array)
    assert info["kind"] == "image2d" and info["modality"] == "xray" and info["dtype"] == "uint16"

    write_image2d(Image2D(np.rint(img.array / 16), img.spacing), tmp_path / "x.png", bits=8)
    info = _inspect_json(capsys, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as pil:
        pixels = np.array(pil)
        dpi_x, dpi_y = pil.info["dpi"]
    assert info["dtype"] == "uint8" and info["modality"] is None
    _check_stats(info, pixels.shape, (25.4 / dpi_y, 25.4 / dpi_x), pixels)
    np.testing.assert_allclose(info["spacing"], (0.3, 0.4), rtol=1e-3)  # pHYs stores whole pixels per metre


def test_png_picture_and_text_output(tmp_path, capsys):
    from PIL import Image

    write_volume(_volume(), tmp_path / "v.nrrd")
    assert main(["inspect", str(tmp_path / "v.nrrd"), "--png", str(tmp_path / "out" / "v.png")]) == 0
    text = capsys.readouterr().out
    assert "shape        (9, 6, 5)  [X, Y, Z]" in text and "orientation  LPS" in text
    with Image.open(tmp_path / "out" / "v.png") as pic:
        assert pic.size[0] > pic.size[1] > 200  # three panels side by side
        grey = np.asarray(pic.convert("L"), dtype=np.float64)
    assert grey.std() > 10  # not blank
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["v.png"]  # no temporary left


def test_bad_input_prints_error_without_traceback(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    assert main(["inspect", str(tmp_path / "broken.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.png: unreadable or corrupt image" in err
    assert "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty"), "--json"]) == 2
    assert "no DICOM series found" in capsys.readouterr().err
