"""``semantic-genesis report transforms --data PATH_OR_PHANTOM --out DIR``: the transformation gallery.

A grid like the Models Genesis paper's transformation figure (Zhou et al. 2019, Fig. 5): one row per
cube, columns original / non-linear / local shuffle / in-painting / out-painting / flip / elastic /
the ``models_genesis`` preset input / the ``semantic_genesis`` preset input (mid-Z slices of 3D cubes).

``--data phantom`` (the default) generates phantom chest CT patients on the fly; otherwise ``--data``
is a scan file or a folder of scans (any layout :func:`semantic_genesis.io.datasets.list_scans`
recognises). Scans are converted to [0, 1] (CT window -1000..1000 HU) and one cube per scan is cropped
where there is lung (the official lung test, preferring the cube with the most structure that still
passes it). Writes ``transforms.png`` and ``transforms.json`` (sources and cube corners) into ``--out``.

Slices are drawn as ``semantic-genesis inspect`` draws them (radiological view: anterior up, the
patient's left on the right) with the physical aspect of the voxels and a colour bar in HU. The flip
column always flips along Y, anterior-posterior (a flip along Z does not show in an axial slice, and
along X a chest looks almost the same), besides the randomly drawn axes; its label says which.
"""

from __future__ import annotations

import argparse

REPORT_NAME = "transforms"
REPORT_HELP = "gallery of the self-restoration transformations and presets on real or phantom cubes"

COLUMNS = (
    "original", "non-linear", "local shuffle", "in-painting", "out-painting", "flip", "elastic",
    "Models Genesis", "Semantic Genesis",
)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="phantom",
                        help="'phantom' (default: generate phantom CT patients) or a scan file / folder of scans")
    parser.add_argument("--out", required=True, help="folder for transforms.png and transforms.json")
    parser.add_argument("--count", type=int, default=4, help="cubes (rows), one per scan (default 4)")
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 32), metavar=("X", "Y", "Z"),
                        help="cube size (default 64 64 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms, crops and transforms")


def _load_volumes(data: str, count: int, seed: int) -> list[tuple[str, "object", tuple]]:
    """``count`` (name, unit float32 (X, Y, Z) array, spacing in mm) triples from the phantom or from disk."""
    from semantic_genesis.errors import DataError
    from semantic_genesis.preprocess import ct_to_unit, to_unit

    if data == "phantom":
        from semantic_genesis.phantoms import make_ct_patient

        volumes = []
        for index in range(count):
            patient = make_ct_patient(index, seed=seed)
            volumes.append((f"phantom-{index}", ct_to_unit(patient.volume.array), tuple(patient.volume.spacing)))
        return volumes
    from pathlib import Path

    from semantic_genesis.io.datasets import list_scans
    from semantic_genesis.io.volumes import read_volume

    root = Path(data)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder (expected 'phantom', a scan file or a folder of scans)")
    refs = [r for r in list_scans(root) if r.modality != "xray"][:count]
    if not refs:
        raise DataError(f"{root}: no 3D scans found")
    volumes = []
    for ref in refs:
        volume = read_volume(ref.path)
        volumes.append((ref.patient_id, to_unit(volume).array, tuple(volume.spacing)))
    return volumes


def choose_cube(unit, size, seed: int):
    """Corner of a ``size`` cube of ``unit`` (X, Y, Z) that passes the lung test, with most structure.

    Candidates lie on a coarse grid and must lie (90%) inside the body, so that dark voxels are lung
    rather than the air around the patient. Among them, those passing the official lung test are
    preferred, the one with most structure (highest tissue score) first; if none passes (e.g. a
    coarse scan where 64 voxels span half the chest), the cube with the most lung is taken.
    """
    import numpy as np

    from semantic_genesis.errors import DataError
    from semantic_genesis.preprocess import body_mask, lung_scores

    shape = np.asarray(unit.shape)
    size = np.asarray(size)
    if (shape < size).any():
        raise DataError(f"scan of shape {tuple(shape)} is smaller than the cube size {tuple(size)}")
    axes = [np.unique(np.linspace(0, s - c, num=min(9, s - c + 1)).astype(int)) for s, c in zip(shape, size)]
    corners = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    scores = lung_scores(unit, corners, tuple(int(s) for s in size))
    body = np.cumsum(np.cumsum(np.cumsum(body_mask(unit), 0), 1), 2)  # summed-area table
    body = np.pad(body, ((1, 0), (1, 0), (1, 0)))
    lo, hi = corners, corners + size
    inside = sum(
        (-1) ** (3 - int(bx) - int(by) - int(bz))
        * body[np.where(bx, hi[:, 0], lo[:, 0]), np.where(by, hi[:, 1], lo[:, 1]), np.where(bz, hi[:, 2], lo[:, 2])]
        for bx in (0, 1) for by in (0, 1) for bz in (0, 1)
    ) / float(np.prod(size))
    inner = inside >= min(0.9, float(inside.max()))
    passing = inner & (scores <= 0.15)
    if passing.any():  # mostly lung, but with the most structure
        pick = int(np.argmax(np.where(passing, scores, -1.0)))
    else:  # coarse scans: the inner cube with the most lung
        pick = int(np.argmin(np.where(inner, scores, np.inf)))
    return tuple(int(c) for c in corners[pick])


def visible_flip(cubes, generator):
    """Flip each cube along random axes as the presets do, and always along Y (anterior-posterior).

    A flip along Z does not show in a mid axial slice and one along X hardly shows on a chest that is
    nearly left-right symmetric; along Y the spine moves to the top, which anyone can see.

    Returns:
        ``(flipped, parity)``: the flipped ``(N, 1, X, Y, Z)`` cubes and the ``(N, 3)`` bool axes flipped.
    """
    from semantic_genesis.transforms.flip import apply_flips, sample_flip_parity

    parity = sample_flip_parity(generator, cubes.shape[0], cubes.ndim - 2, prob=1.0)
    parity[:, 1] = True
    return apply_flips(cubes, parity), parity


def gallery_columns(cubes, seed: int):
    """Apply each transform and preset to ``cubes`` ``(N, 1, X, Y, Z)``.

    Returns:
        ``(columns, flip_axes)``: {column: tensor} and, per cube, the axes the flip column flipped.
    """
    import torch

    from semantic_genesis.transforms import build_preset, elastic, inpaint, local_shuffle, nonlinear, outpaint

    def g(k: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1000 + k)

    flipped, parity = visible_flip(cubes, g(5))
    columns = {
        "original": cubes,
        "non-linear": nonlinear(cubes, g(1)),
        "local shuffle": local_shuffle(cubes, g(2)),
        "in-painting": inpaint(cubes, g(3)),
        "out-painting": outpaint(cubes, g(4)),
        "flip": flipped,
        "elastic": elastic(cubes, g(6)),
        "Models Genesis": build_preset("models_genesis")(cubes, g(7))[0],
        "Semantic Genesis": build_preset("semantic_genesis")(cubes, g(8))[0],
    }
    axes = [" ".join(a for a, on in zip("XYZ", row.tolist()) if on) for row in parity]
    return columns, axes


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from semantic_genesis.errors import ConfigError
    from semantic_genesis.report._views import VIEW_NOTE, show_slice, spacing_text, unit_label
    from semantic_genesis.utils.atomic import write_figure, write_json

    if args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    size = tuple(int(s) for s in args.size)
    if min(size) < 8:
        raise ConfigError(f"--size must be at least 8 voxels per axis, got {list(size)}")
    sources = []
    crops = []
    spacings = []
    for name, unit, spacing in _load_volumes(args.data, args.count, args.seed):
        unit = np.asarray(unit, dtype=np.float32)
        corner = choose_cube(unit, size, args.seed)
        crops.append(unit[tuple(slice(c, c + s) for c, s in zip(corner, size))])
        spacings.append(spacing)
        sources.append({"scan": name, "corner": list(corner), "size": list(size), "spacing_mm": list(spacing)})
    cubes = torch.from_numpy(np.stack(crops))[:, None]
    columns, flip_axes = gallery_columns(cubes, args.seed)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = cubes.shape[0]
    fig, axes = plt.subplots(n, len(COLUMNS), figsize=(1.65 * len(COLUMNS) + 1.3, 1.85 * n + 1.0), squeeze=False,
                             constrained_layout=True)
    image = None
    for i in range(n):
        for j, key in enumerate(COLUMNS):
            ax = axes[i][j]
            image = show_slice(ax, columns[key][i, 0].numpy(), "axial", spacing=spacings[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(key, fontsize=8)
            if j == 0:
                ax.set_ylabel(sources[i]["scan"], fontsize=7)
            if key == "flip":
                ax.set_xlabel(f"flipped along {flip_axes[i]}", fontsize=6)
        sources[i]["flip_axes"] = flip_axes[i]
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label=unit_label())
    fig.suptitle(f"Self-restoration transformations: mid axial slices of {'x'.join(map(str, size))} cubes "
                 f"({spacing_text(spacings[0])})\n{VIEW_NOTE}", fontsize=9)
    figure = out / "transforms.png"
    write_figure(figure, fig, dpi=120)
    write_json(out / "transforms.json", {"data": args.data, "seed": args.seed, "columns": list(COLUMNS), "cubes": sources})
    print(f"wrote {figure.resolve()}")
    return 0
