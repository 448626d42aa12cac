"""Report figures draw slices as ``inspect`` does: radiological view, physical aspect, HU colour bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semantic_genesis.report._views import aspect, cube_spacing, scan_spacing, show_slice, unit_label  # noqa: E402


def _volume():
    # value = 100 * x + 10 * y + z: every voxel is identifiable after slicing
    x, y, z = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.float32)


def test_axial_slices_have_x_right_and_y_down_like_inspect():
    fig, ax = plt.subplots()
    image = show_slice(ax, _volume(), "axial", spacing=(0.7, 0.7, 2.5), vmin=0, vmax=600)
    data = np.asarray(image.get_array())
    assert data.shape == (5, 4)  # rows = Y, columns = X
    assert data[0, 0] == 3 and data[0, 3] == 303 and data[4, 0] == 43  # mid z = 3; Y grows downwards
    assert image.origin == "upper"  # row 0 (anterior for LPS scans) at the top: the spine is at the bottom
    plt.close(fig)


def test_coronal_and_sagittal_have_z_up_and_the_physical_aspect():
    fig, ax = plt.subplots()
    image = show_slice(ax, _volume(), "coronal", spacing=(0.7, 0.7, 2.5))
    data = np.asarray(image.get_array())
    assert data.shape == (6, 4) and data[5, 0] == 25 and image.origin == "lower"  # mid y = 2, Z upwards
    assert ax.get_aspect() == 2.5 / 0.7
    plt.close(fig)
    assert aspect("axial", (0.7, 0.8, 2.5)) == 0.8 / 0.7
    assert aspect("sagittal", (0.7, 0.8, 2.5)) == 2.5 / 0.8
    assert aspect("axial", None) == 1.0


def test_inspect_draws_with_the_same_convention(tmp_path):
    from semantic_genesis.commands.inspect import save_png
    from semantic_genesis.io.volumes import Volume

    volume = Volume(_volume(), (0.7, 0.7, 2.5), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), {"modality": "ct"})
    captured = []
    original = plt.Axes.imshow

    def spy(self, data, *args, **kwargs):
        captured.append((np.asarray(data), kwargs.get("origin"), kwargs.get("aspect")))
        return original(self, data, *args, **kwargs)

    plt.Axes.imshow = spy
    try:
        save_png(volume, tmp_path / "v.png")
    finally:
        plt.Axes.imshow = original
    axial, origin, ratio = captured[0]
    np.testing.assert_array_equal(axial, _volume()[:, :, 3].T)
    assert origin == "upper" and ratio == 1.0


def test_spacing_of_a_cube_comes_from_its_scan(tmp_path):
    from semantic_genesis.io.volumes import Volume, write_volume

    scan = tmp_path / "scan.nii.gz"
    write_volume(Volume(np.zeros((8, 8, 4), np.float32), (0.7, 0.8, 2.5), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1), {}), scan)
    np.testing.assert_allclose(scan_spacing("scan.nii.gz", relative_to=[tmp_path]), (0.7, 0.8, 2.5), rtol=1e-6)
    record = {"scan": str(scan), "crop": [8, 8, 4]}
    np.testing.assert_allclose(cube_spacing(record, [4, 4, 4]), (1.4, 1.6, 2.5), rtol=1e-6)  # resized crop
    assert scan_spacing(tmp_path / "missing.nii.gz") is None
    assert scan_spacing(scan, intensity=type("I", (), {"spacing": (1.0, 1.0, 1.0)})()) == (1.0, 1.0, 1.0)


def test_colour_bar_labels_say_what_the_unit_range_means():
    assert unit_label() == "intensity (0 = -1000 HU, 1 = 1000 HU)"
    assert unit_label({"modality": "ct", "hu_min": -160.0, "hu_max": 240.0}) == "intensity (0 = -160 HU, 1 = 240 HU)"
    assert "percentile" in unit_label({"modality": "mri"})
