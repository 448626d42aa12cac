"""``semantic-genesis report patterns RUN_DIR --out DIR``: pictures of the discovered patterns.

Two figures, after the Semantic Genesis paper's Fig. 1a (and TransVW's Fig. 4):

* ``patterns_grid.png``: for a few classes (rows), the mid axial slice of the base-resolution crop of
  the same coordinate in several neighbours (columns, nearest first; column 0 is the reference), so
  one can see that a class is one anatomical pattern across patients;
* ``patterns_reference.png``: the reference patient of the first group(s), an axial and a coronal
  slice through it with every coordinate's crop drawn as a labelled box.

``RUN_DIR`` is a discovery run folder (with ``patterns/``) or a pattern set itself.
"""

from __future__ import annotations

import argparse

REPORT_NAME = "patterns"
REPORT_HELP = "grid of the discovered patterns across neighbours, and the reference with its coordinates"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="discovery run folder (or its patterns/ folder)")
    parser.add_argument("--out", required=True, help="folder for the figures")
    parser.add_argument("--classes", type=int, default=6, help="classes (rows) in the grid (default 6)")
    parser.add_argument("--neighbours", type=int, default=8, help="neighbours (columns) per class (default 8)")
    parser.add_argument("--references", type=int, default=1, help="reference figures (default 1)")


def _store_root(run_dir):
    from pathlib import Path

    from semantic_genesis.errors import DataError

    root = Path(run_dir)
    if (root / "patterns" / "manifest.json").is_file():
        return root / "patterns"
    if (root / "manifest.json").is_file():
        return root
    raise DataError(f"{root}: neither a discovery run folder (with patterns/manifest.json) nor a pattern set")


def pattern_grid(store, classes: int, neighbours: int):
    """``(rows, labels)``: mid axial slices ``[class][neighbour] -> (X, Y)`` of base-resolution crops."""
    import numpy as np

    by_label: dict[int, list[int]] = {}
    for i, rec in enumerate(store.all_records()):
        if rec.get("resolution", 0) == 0:
            by_label.setdefault(int(rec["label"]), []).append(i)
    labels = sorted(by_label)[:classes]
    rows = []
    for lab in labels:
        idx = sorted(by_label[lab], key=lambda i: store.record(i).get("rank", 0))[:neighbours]
        row = []
        for i in idx:
            item = store.item(i)[0]
            row.append(np.asarray(item[:, :, item.shape[2] // 2]))
        rows.append(row)
    return rows, labels


def _save(fig, path) -> None:
    from semantic_genesis.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def draw_grid(store, out, classes: int, neighbours: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, labels = pattern_grid(store, classes, neighbours)
    ncols = max((len(r) for r in rows), default=1)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.6 * len(rows)), squeeze=False)
    for r, (row, lab) in enumerate(zip(rows, labels)):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                ax.imshow(row[c].T, cmap="gray", vmin=0, vmax=1, origin="lower")
            if c == 0:
                ax.set_title(f"class {lab} (reference)", fontsize=7, loc="left")
            elif r == 0:
                ax.set_title(f"neighbour {c}", fontsize=7)
    fig.suptitle("Discovered patterns: one row = one coordinate across nearest patients (mid axial slice)",
                 fontsize=8)
    path = out / "patterns_grid.png"
    _save(fig, path)
    plt.close(fig)
    return path


def draw_reference(store, out, group_index: int):
    """Axial and coronal slice of a group's reference with its coordinates' crops boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from semantic_genesis.config import IntensityConfig, from_dict
    from semantic_genesis.discovery.scans import load_unit_scan

    attrs = store.manifest.get("attrs", {})
    groups = attrs.get("groups", [])
    if group_index >= len(groups):
        return None
    group = groups[group_index]
    ref = group["reference"]
    path = attrs.get("paths", {}).get(ref)
    intensity = from_dict(IntensityConfig, attrs.get("config", {}).get("intensity", {}))
    unit = load_unit_scan(path, intensity)
    size = attrs["pattern_size"]
    corners = np.asarray(group["reference_corners"]).reshape(-1, 3)
    z_mid = int(np.median(corners[:, 2] + size[2] // 2))
    y_mid = int(np.median(corners[:, 1] + size[1] // 2))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.5))
    ax1.imshow(unit[:, :, z_mid].T, cmap="gray", vmin=0, vmax=1, origin="lower")
    ax2.imshow(unit[:, y_mid, :].T, cmap="gray", vmin=0, vmax=1, origin="lower", aspect="auto")
    colours = plt.get_cmap("tab20")
    for k, (corner, lab) in enumerate(zip(corners, group["labels"])):
        colour = colours(k % 20)
        x, y, z = (int(v) for v in corner)
        in_axial = z <= z_mid < z + size[2]
        in_coronal = y <= y_mid < y + size[1]
        ax1.add_patch(Rectangle((x, y), size[0], size[1], fill=False, ec=colour, lw=1.2,
                                ls="-" if in_axial else ":"))
        ax1.text(x + 1, y + size[1] - 3, str(lab), color=colour, fontsize=7)
        ax2.add_patch(Rectangle((x, z), size[0], size[2], fill=False, ec=colour, lw=1.2,
                                ls="-" if in_coronal else ":"))
        ax2.text(x + 1, z + size[2] - 2, str(lab), color=colour, fontsize=7)
    ax1.set_title(f"reference {ref}: axial slice z={z_mid}", fontsize=8)
    ax2.set_title(f"coronal slice y={y_mid} (dotted: box not cut by this slice)", fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks([])
        ax.set_yticks([])
    path = out / ("patterns_reference.png" if group_index == 0 else f"patterns_reference_{group_index}.png")
    _save(fig, path)
    plt.close(fig)
    return path


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semantic_genesis.io.shards import ShardedArray

    root = _store_root(args.run_dir)
    store = ShardedArray(root, kind="patterns")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [draw_grid(ShardedArray(root, split="train", kind="patterns"), out, args.classes, args.neighbours)]
    for g in range(max(args.references, 0)):
        path = draw_reference(store, out, g)
        if path is not None:
            written.append(path)
    for path in written:
        print(path)
    return 0
