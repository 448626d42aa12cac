"""``semantic-genesis phantom``: end to end on tiny cohorts."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.io.datasets.luna16 import Luna16Dataset


def test_phantom_ct_luna16_end_to_end(tmp_path, capsys):
    out = tmp_path / "luna"
    argv = ["phantom", "ct", "--patients", "2", "--seed", "1", "--out", str(out), "--layout", "luna16",
            "--shape", "48", "48", "32", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 patients in luna16 layout" in printed and str(out.resolve()) in printed
    assert "annotations.csv" in printed
    ds = Luna16Dataset(out)
    assert len(ds) == 2
    scan = ds.load(ds.series_ids()[0])
    assert scan.volume.array.shape == (48, 48, 32)
    assert scan.volume.array.min() >= -1024 and scan.volume.array.max() > 200  # air .. bone in HU
    assert all(c.label in (0, 1) for c in scan.candidates) and len(scan.candidates) > 0
    for ann in scan.annotations:
        assert np.all(ann.center_vox > -0.5) and np.all(ann.center_vox < np.array(scan.volume.shape) - 0.5)
    # rerun resumes: nothing is rewritten
    assert main(argv) == 0
    assert "2 already there, 0 written" in capsys.readouterr().out


def test_phantom_cli_errors(tmp_path, capsys):
    assert main(["phantom", "ct", "--patients", "0", "--out", str(tmp_path)]) == 2
    assert "--patients must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["phantom", "mri", "--out", str(tmp_path), "--layout", "luna16"])
    assert "invalid choice" in capsys.readouterr().err


def test_phantom_ct_spacing_option(tmp_path, capsys):
    out = tmp_path / "fine"
    argv = ["phantom", "ct", "--patients", "1", "--out", str(out), "--layout", "luna16",
            "--shape", "80", "80", "48", "--spacing", "4.5", "4.5", "6.5", "--quiet"]
    assert main(argv) == 0
    scan = Luna16Dataset(out).load(Luna16Dataset(out).series_ids()[0])
    assert scan.volume.array.shape == (80, 80, 48)
    np.testing.assert_allclose(scan.volume.spacing, (4.5, 4.5, 6.5))
    # another spacing into the same folder is refused (resume needs the same settings)
    assert main([*argv[:-5], "--spacing", "4.0", "4.0", "6.5", "--quiet"]) == 2
    assert "different settings" in capsys.readouterr().err
    assert main(["phantom", "ct", "--out", str(tmp_path / "x"), "--spacing", "0", "1", "1"]) == 2
    assert "--spacing must be three positive mm values" in capsys.readouterr().err
    # a grid too small for a thorax is named
    assert main(["phantom", "ct", "--out", str(tmp_path / "y"), "--shape", "64", "64", "48", "--spacing", "1", "1", "1"]) == 2
    assert "field of view" in capsys.readouterr().err
