"""``semantic-genesis report patterns``: the grid of patterns and the reference with its coordinates.

(Kept beside the discovery tests to share their discovery run.)
"""

from __future__ import annotations

import numpy as np

from semantic_genesis.io.shards import ShardedArray
from semantic_genesis.report.patterns import pattern_grid


def test_grid_rows_are_one_class_across_neighbours(discovered):
    store = ShardedArray(discovered.patterns, split="train")
    rows, labels, patients = pattern_grid(store, classes=4, neighbours=3)
    assert labels == [0, 1, 2, 3] and all(len(r) == 3 for r in rows) and all(len(p) == 3 for p in patients)
    assert rows[0][0].shape == tuple(store.item_shape[1:])
    # column 0 is the reference's crop: the stored base crop of rank 0
    rec = store.all_records()
    i = next(k for k, r in enumerate(rec) if r["label"] == 0 and r["rank"] == 0 and r["resolution"] == 0)
    np.testing.assert_array_equal(rows[0][0], store.item(i)[0])
    assert patients[0][0] == rec[i]["patient"]


def test_report_command_writes_the_figures(discovered, tmp_path, capsys):
    from semantic_genesis.cli import main

    assert main(["report", "patterns", str(discovered.run_dir), "--out", str(tmp_path), "--classes", "3",
                 "--neighbours", "4", "--references", "2"]) == 0
    printed = capsys.readouterr().out
    for name in ("patterns_grid.png", "patterns_reference.png", "patterns_reference_1.png"):
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 5000
        assert str(path) in printed
    from PIL import Image

    with Image.open(tmp_path / "patterns_grid.png") as im:
        assert im.width > im.height  # 4 columns, 3 rows


def test_report_on_a_folder_without_patterns(tmp_path):
    from semantic_genesis.cli import main

    assert main(["report", "patterns", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
