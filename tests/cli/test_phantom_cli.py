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
