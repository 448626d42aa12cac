"""``semantic-genesis inspect PATH``: geometry and intensity statistics of a volume or 2D image.

What is read is decided by the path: a folder is a DICOM series; ``.png``/``.jpg``/``.jpeg`` and
single-frame ``.dcm`` files are 2D images; ``.nii``, ``.nii.gz``, ``.mhd``, ``.mha``, ``.nrrd``,
``.npy`` and multi-frame ``.dcm`` files are volumes.

``--png`` display orientation: volume slices are shown in voxel order without reorientation. The
axial view (mid Z) has X to the right and Y downwards; the coronal (mid Y) and sagittal (mid X)
views have Z upwards with X, respectively Y, to the right. For the usual LPS-oriented CT (the
orientation code is printed in the title) this is the radiological convention: the patient's left
on the viewer's right, anterior at the top of the axial view, head at the top. Pixels are drawn
with their physical aspect ratio (spacing), grey values between the 1st and 99th percentiles.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "inspect"
HELP = "print the shape, spacing, orientation and intensity statistics of a scan or 2D image"
ORDER = 1
PERCENTILES = (1, 5, 50, 95, 99)
_2D_SUFFIXES = (".png", ".jpg", ".jpeg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="volume file, DICOM series folder, or 2D image")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--png", metavar="OUT.png", default=None, help="also save a picture (mid-slices or the image)")
    parser.add_argument("--series-id", default=None, help="DICOM SeriesInstanceUID when a folder holds several")


def _is_2d(path: Path) -> bool:
    suffix = path.suffix.lower()
    if path.is_dir():
        return False
    if suffix in _2D_SUFFIXES:
        return True
    if suffix in (".dcm", ".dicom"):
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - unreadable: let read_image2d raise the proper error
            return True
        return int(getattr(ds, "NumberOfFrames", 1) or 1) <= 1
    return False


def load(path: str | Path, series_id: str | None = None) -> Any:
    """Read ``path`` as a ``Volume`` or an ``Image2D`` (see the module docstring)."""
    path = Path(path).expanduser()
    if path.exists() and _is_2d(path):
        from semantic_genesis.io.images2d import read_image2d

        return read_image2d(path)
    from semantic_genesis.io.volumes import read_volume

    return read_volume(path, series_id=series_id)


def describe(image: Any) -> dict:
    """The statistics printed by ``inspect`` (JSON-ready): shape in (X, Y, Z) or (H, W) order, etc."""
    import numpy as np

    arr = image.array
    is_volume = arr.ndim == 3
    values = np.percentile(arr, PERCENTILES)
    info: dict[str, Any] = {
        "path": str(image.metadata.get("path", "")),
        "kind": "volume" if is_volume else "image2d",
        "format": image.metadata.get("format"),
        "shape": [int(s) for s in arr.shape],
        "axes": "X, Y, Z" if is_volume else "H, W",
        "spacing": [float(s) for s in image.spacing],
    }
    if is_volume:
        info["origin"] = [float(v) for v in image.origin]
        info["direction"] = [float(v) for v in image.direction]
        info["orientation"] = image.orientation_code
    info.update(
        {
            "dtype": image.metadata.get("dtype", str(arr.dtype)),
            "modality": image.metadata.get("modality"),
            "min": float(arr.min()),
            "max": float(arr.max()),
            "mean": float(arr.mean(dtype=np.float64)),
            "std": float(arr.std(dtype=np.float64)),
            "percentiles": {str(p): float(v) for p, v in zip(PERCENTILES, values)},
        }
    )
    for key in ("series_id", "num_files", "uniform_slice_spacing", "slice_gaps", "photometric", "values",
                "units", "spacing_known", "spacing_source"):
        if key in image.metadata:
            info[key] = image.metadata[key]
    return info


def _format_text(info: dict) -> str:
    def nums(values: list, fmt: str = "{:.4g}") -> str:
        return "(" + ", ".join(fmt.format(v) for v in values) + ")"

    lines = [
        f"{info['path']}",
        f"  kind         {info['kind']} ({info['format']})",
        f"  shape        {nums(info['shape'], '{}')}  [{info['axes']}]",
        f"  spacing      {nums(info['spacing'])} mm" + _spacing_note(info),
    ]
    if info["kind"] == "volume":
        lines.append(f"  origin       {nums(info['origin'])} mm (LPS)")
        lines.append(f"  orientation  {info['orientation']}")
    lines += [
        f"  dtype        {info['dtype']} (native)",
        f"  modality     {info['modality'] or 'unknown'}",
        f"  min / max    {info['min']:.6g} / {info['max']:.6g}",
        f"  mean ± sd    {info['mean']:.6g} ± {info['std']:.6g}",
        "  percentiles  " + "  ".join(f"p{k}={v:.6g}" for k, v in info["percentiles"].items()),
    ]
    if "series_id" in info:
        lines.append(f"  series       {info['series_id']} ({info['num_files']} files)")
    if "uniform_slice_spacing" in info:
        if info["uniform_slice_spacing"]:
            lines.append("  slices       uniform spacing")
        else:
            gaps = info.get("slice_gaps") or []
            missing = sum(int(g["missing"]) for g in gaps)
            detail = f"{len(gaps)} irregular step(s)" + (f", ~{missing} slice(s) missing" if missing else "")
            if gaps:
                detail += f", expected {gaps[0]['expected_mm']:.4g} mm"
            lines.append(f"  slices       NOT uniform ({detail}); z spacing is an average, geometry approximate")
    if "values" in info:
        values = "VOI LUT / window applied (display values)" if info["values"] == "voi" else "modality values"
        lines.append(f"  values       {values}" + (f" in {info['units']}" if info.get("units") else ""))
    return "\n".join(lines)


def _spacing_note(info: dict) -> str:
    if info.get("spacing_known") is False:
        return "  (unknown: not in the file, assumed)"
    if info.get("spacing_source"):
        return f"  (from {info['spacing_source']})"
    return ""


def save_png(image: Any, out: str | Path, title: str = "") -> Path:
    """Save orthogonal mid-slices (volume) or the image (2D) with a colour bar, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from semantic_genesis.report._views import show_slice
    from semantic_genesis.utils.atomic import atomic_open

    arr = image.array
    vmin, vmax = (float(v) for v in np.percentile(arr, [1, 99]))
    if vmax <= vmin:
        vmin, vmax = float(arr.min()), float(arr.max()) + 1e-6
    units = "HU" if image.metadata.get("modality") == "ct" else "value"
    if arr.ndim == 3:
        cx, cy, cz = (s // 2 for s in arr.shape)
        views = [(f"axial z={cz}", "axial", cz, "X", "Y"), (f"coronal y={cy}", "coronal", cy, "X", "Z"),
                 (f"sagittal x={cx}", "sagittal", cx, "Y", "Z")]
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), constrained_layout=True)
    else:
        views = [("image", "axial", None, "column", "row")]
        fig, axes = plt.subplots(1, 1, figsize=(6.5, 6), constrained_layout=True)
        axes = [axes]
    shown = None
    for ax, (name, view, index, xlabel, ylabel) in zip(axes, views):
        shown = show_slice(ax, arr, view, index, image.spacing, vmin=vmin, vmax=vmax)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label=units)
    fig.suptitle(title, fontsize=9)
    out = Path(out)
    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return out


def run(args: argparse.Namespace) -> int:
    import json

    image = load(args.path, args.series_id)
    info = describe(image)
    if args.png:
        title = f"{Path(args.path).name}  shape {tuple(info['shape'])}  spacing {tuple(round(s, 3) for s in info['spacing'])} mm"
        if info["kind"] == "volume":
            title += f"  orientation {info['orientation']}"
        info["png"] = str(save_png(image, args.png, title))
    if args.json:
        print(json.dumps(info))
    else:
        print(_format_text(info))
        if args.png:
            print(f"  picture      {info['png']}")
    return 0
