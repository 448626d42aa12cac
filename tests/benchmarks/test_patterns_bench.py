"""The 2D pattern-generation memory benchmark runs on a tiny setting and writes what it reports."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "patterns.py"


def _bench():
    spec = importlib.util.spec_from_file_location("patterns_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_radiographs_and_their_body_boxes():
    cohort = _bench().SyntheticRadiographs(256)
    a, b = cohort("p_00001"), cohort("p_00002")
    assert a.shape == (256, 256, 1) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, b) and np.array_equal(a, cohort("p_00001"))  # per patient, reproducible
    frame = cohort.frame("p_00001")
    x0, y0 = int(frame.origin[0]), int(frame.origin[1])
    x1, y1 = x0 + int(frame.extent[0]), y0 + int(frame.extent[1])
    inside = a[max(x0, 0) : x1, max(y0, 0) : y1, 0].mean()
    assert inside > a[:, :, 0].mean() + 0.05  # the box holds the bright body


def test_2d_generation_benchmark_prints_the_peak_for_each_k(capsys, tmp_path):
    bench = _bench()
    assert bench.main(["--skip-memory", "--skip-generation", "--skip-content", "--gen2d-classes", "2",
                       "--gen2d-neighbours", "8", "--gen2d-memory-mb", "16", "--gen2d-image-size", "384",
                       "--tmp", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "K=    8" in l)
    # C x (K x 3 resolutions + 30 validation patches)
    assert re.search(r"K=    8:\s+108 patches .* peak VmRSS \d+\.\d\d GiB", line), line
    assert list(tmp_path.iterdir()) == []  # the temporary pattern set is removed
