"""``semantic-genesis report patterns RUN_DIR --out DIR``: pictures of the discovered patterns.

Two figures, after the Semantic Genesis paper's Fig. 1a (and TransVW's Fig. 4):

* ``patterns_grid.png``: for a few classes (rows), the mid axial slice of the base-resolution crop of
  the same coordinate in several neighbours (columns, nearest first; column 0 is the reference), so
  one can see that a class is one anatomical pattern across patients;
* ``patterns_reference.png``: the reference patient of the first group(s), an axial and a coronal
  slice through it with every coordinate's crop drawn as a labelled box (2D discovery: the reference
  radiograph or CT slice with every patch boxed).

Slices are drawn as ``semantic-genesis inspect`` draws them (radiological view: anterior up, the
patient's left on the right; coronal: head up), with the physical aspect of the voxels and a colour
bar in HU.

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
    """``(rows, labels, patients)``: base-resolution crops ``[class][neighbour] -> (X, Y, Z)`` and their patients."""
    import numpy as np

    by_label: dict[int, list[int]] = {}
    for i, rec in enumerate(store.all_records()):
        if rec.get("resolution", 0) == 0:
            by_label.setdefault(int(rec["label"]), []).append(i)
    labels = sorted(by_label)[:classes]
    rows, patients = [], []
    for lab in labels:
        idx = sorted(by_label[lab], key=lambda i: store.record(i).get("rank", 0))[:neighbours]
        rows.append([np.asarray(store.item(i)[0]) for i in idx])
        patients.append([store.record(i).get("patient") for i in idx])
    return rows, labels, patients


def _save(fig, path) -> None:
    from semantic_genesis.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def _intensity(attrs):
    from semantic_genesis.config import IntensityConfig, from_dict

    return from_dict(IntensityConfig, attrs.get("config", {}).get("intensity", {}))


def draw_grid(store, out, classes: int, neighbours: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_genesis.report._views import VIEW_NOTE, scan_spacing, show_slice, unit_label

    attrs = store.manifest.get("attrs", {})
    paths = attrs.get("paths", {})
    intensity = _intensity(attrs)
    rows, labels, patients = pattern_grid(store, classes, neighbours)
    ncols = max((len(r) for r in rows), default=1)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.5 * ncols + 1.4, 1.6 * len(rows) + 0.9), squeeze=False,
                             constrained_layout=True)
    image = None
    for r, (row, lab, pids) in enumerate(zip(rows, labels, patients)):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            image = show_slice(ax, row[c], "axial", spacing=scan_spacing(paths.get(pids[c]), intensity))
            if c == 0:
                ax.set_ylabel(f"class {lab}", fontsize=8)
            if r == 0:
                ax.set_title("reference" if c == 0 else f"neighbour {c}", fontsize=8)
            ax.set_xlabel(str(pids[c]), fontsize=6)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label=unit_label(intensity))
    flat = len(attrs.get("pattern_size", ())) == 2
    what = "the base-resolution 2D patch" if flat else f"mid axial slice of the base-resolution crop; {VIEW_NOTE}"
    fig.suptitle("Discovered patterns: each row is one coordinate in the reference and its nearest patients\n"
                 f"({what})", fontsize=9)
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
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from semantic_genesis.discovery.scans import load_unit_scan
    from semantic_genesis.report._views import VIEW_NOTE, scan_spacing, show_slice, spacing_text, unit_label

    attrs = store.manifest.get("attrs", {})
    groups = attrs.get("groups", [])
    if group_index >= len(groups):
        return None
    if len(attrs.get("pattern_size", ())) == 2:
        return draw_reference_2d(store, out, group_index)
    group = groups[group_index]
    ref = group["reference"]
    path = attrs.get("paths", {}).get(ref)
    intensity = _intensity(attrs)
    unit = load_unit_scan(path, intensity)
    spacing = scan_spacing(path, intensity)
    size = attrs["pattern_size"]
    corners = np.asarray(group["reference_corners"]).reshape(-1, 3)
    z_mid = int(np.median(corners[:, 2] + size[2] // 2))
    y_mid = int(np.median(corners[:, 1] + size[1] // 2))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.2), constrained_layout=True)
    image = show_slice(ax1, unit, "axial", z_mid, spacing)
    show_slice(ax2, unit, "coronal", y_mid, spacing)
    colours = plt.get_cmap("tab20")
    for k, (corner, lab) in enumerate(zip(corners, group["labels"])):
        colour = colours(k % 20)
        x, y, z = (int(v) for v in corner)
        in_axial = z <= z_mid < z + size[2]
        in_coronal = y <= y_mid < y + size[1]
        ax1.add_patch(Rectangle((x - 0.5, y - 0.5), size[0], size[1], fill=False, ec=colour, lw=1.4,
                                ls="-" if in_axial else ":"))
        ax1.text(x + 1, y + 3, str(lab), color=colour, fontsize=8, va="top", fontweight="bold")
        ax2.add_patch(Rectangle((x - 0.5, z - 0.5), size[0], size[2], fill=False, ec=colour, lw=1.4,
                                ls="-" if in_coronal else ":"))
        ax2.text(x + 1, z + size[2] - 2, str(lab), color=colour, fontsize=8, va="top", fontweight="bold")
    ax1.set_title(f"axial slice z={z_mid} (anterior up, patient's left on the right)", fontsize=9)
    ax2.set_title(f"coronal slice y={y_mid} (head up, patient's left on the right)", fontsize=9)
    for ax, (h, v) in ((ax1, ("X (voxels)", "Y (voxels)")), (ax2, ("X (voxels)", "Z (voxels)"))):
        ax.set_xlabel(h, fontsize=8)
        ax.set_ylabel(v, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=[ax1, ax2], shrink=0.8, label=unit_label(intensity))
    legend = [Line2D([], [], color="0.3", lw=1.4, ls="-", label="crop cut by this slice"),
              Line2D([], [], color="0.3", lw=1.4, ls=":", label="crop elsewhere along the slice axis")]
    ax2.legend(handles=legend, loc="lower right", fontsize=7, framealpha=0.8)
    fig.suptitle(f"Reference patient {ref}: the {len(corners)} coordinates of group {group_index} "
                 f"(labels = pattern classes, boxes = {size[0]}x{size[1]}x{size[2]} crops)\n"
                 f"{VIEW_NOTE}; {spacing_text(spacing)}", fontsize=9)
    path = out / ("patterns_reference.png" if group_index == 0 else f"patterns_reference_{group_index}.png")
    _save(fig, path)
    plt.close(fig)
    return path


def draw_reference_2d(store, out, group_index: int):
    """2D discovery: the reference image (radiograph or axial CT slice) with every coordinate's patch boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from semantic_genesis.config import DiscoveryConfig, from_dict
    from semantic_genesis.discovery.scans import load_unit_image
    from semantic_genesis.report._views import show_slice, unit_label

    attrs = store.manifest.get("attrs", {})
    group = attrs["groups"][group_index]
    ref = group["reference"]
    path = attrs.get("paths", {}).get(ref)
    intensity = _intensity(attrs)
    dcfg = from_dict(DiscoveryConfig, attrs.get("config", {}).get("discovery", {}))
    unit = load_unit_image(path, intensity, slice_position=dcfg.slice_position)[:, :, 0]
    size = attrs["pattern_size"]
    corners = np.asarray(group["reference_corners"]).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(6.5, 6.2), constrained_layout=True)
    image = show_slice(ax, unit)
    colours = plt.get_cmap("tab20")
    for k, (corner, lab) in enumerate(zip(corners, group["labels"])):
        colour = colours(k % 20)
        row, col = int(corner[0]), int(corner[1])
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), size[1], size[0], fill=False, ec=colour, lw=1.4))
        ax.text(col + 2, row + 2, str(lab), color=colour, fontsize=8, va="top", fontweight="bold")
    ax.set_xlabel("column (pixels)", fontsize=8)
    ax.set_ylabel("row (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label=unit_label(intensity))
    fig.suptitle(f"Reference {ref}: the {len(corners)} coordinates of group {group_index}\n"
                 f"(labels = pattern classes, boxes = {size[0]}x{size[1]} patches; image as stored)", fontsize=9)
    path_out = out / ("patterns_reference.png" if group_index == 0 else f"patterns_reference_{group_index}.png")
    _save(fig, path_out)
    plt.close(fig)
    return path_out


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
