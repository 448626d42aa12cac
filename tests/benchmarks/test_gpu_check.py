"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end on the CPU with tiny sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_every_section_on_the_cpu():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu"], capture_output=True, text=True,
                            env=env, timeout=600)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "ERROR" not in out
    for header in ("[1] environment", "[2] transform presets", "[3] pretraining step", "[4] fine-tuning step",
                   "[5] pretraining runs"):
        assert header in out
    # every measurement printed a number: 12 transform rows (2 presets + 4 single stages, 3D and 2D),
    # 4 step rows (compile skipped on the CPU), 2 fine-tuning rows, 2 data-wait rows
    assert len(re.findall(r"samples/s", out)) == 12 + 1  # + the section header
    assert len(re.findall(r"samples/s \(this stage on every sample\)", out)) == 8
    # the device path against the old torch path: both presets, 3D and 2D
    paths = re.findall(r"device path\s+\d+/s,\s+\d+ ops,\s+\d+ waits \| torch path\s+\d+/s,\s+\d+ ops,\s+\d+ waits \|\s+[\d.]+x", out)
    assert len(paths) == 4
    assert len(re.findall(r"ms/step, peak", out)) == 4 + 2
    assert len(re.findall(r"skipped \(torch.compile on a CPU", out)) == 2
    assert len(re.findall(r"transforms_on=\s*(device|workers): data wait\s+[\d.]+ %", out)) == 2
    assert "0 failed measurement(s)" in out
