"""``semantic-genesis report restorations RUN_DIR --out DIR``: what a pretrained network restores.

One row per validation cube, columns input (transformed) / output (restored) / target (original),
each the mid axial (Z) slice, after the Models Genesis paper's restoration figures. Slices are drawn
as ``semantic-genesis inspect`` draws them (radiological view: anterior up, the patient's left on the
right) with the physical aspect of the cube's voxels (read from its scan), and a colour bar in HU.
The cubes and their transformations are the run's fixed validation set (batch 0, transformed with
the generator seeded from ``(seed, "validation", 0)``), so figures of different runs or checkpoints
of the same cube set show the same inputs.

Writes ``restorations.png`` and ``restorations.json`` (per-cube MSE of output and of input against
the target).
"""

from __future__ import annotations

import argparse

REPORT_NAME = "restorations"
REPORT_HELP = "input / restored output / target mid-slices of fixed validation cubes of a pretraining run"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="pretraining run folder (config.yaml + weights/)")
    parser.add_argument("--out", default=None, help="folder for the figure (default RUN_DIR/figures)")
    parser.add_argument("--weights", default="best", help="best | final | path to a .safetensors file (default best)")
    parser.add_argument("--count", type=int, default=4, help="cubes (rows) to show (default 4)")
    parser.add_argument("--data", default=None, help="cube set to draw from (default: the run's data=)")


def restoration_examples(run_dir, weights: str = "best", count: int = 4, data: str | None = None):
    """Restore ``count`` fixed validation cubes with a run's weights.

    Returns:
        ``(examples, spacings, cfg)``: a dict of float32 CPU tensors ``(N, C, X, Y, Z)`` in [0, 1]
        (``input``, ``output``, ``target`` for restoration methods; whatever the method's
        ``example_batch`` gives otherwise), the voxel spacing of each cube (``None`` when its scan
        cannot be found) and the run's config.

    Raises:
        ConfigError / CheckpointError / DataError: the run folder, weights or data are unusable.
    """
    from pathlib import Path

    import torch

    from semantic_genesis import methods
    from semantic_genesis.config import load_config, replace
    from semantic_genesis.errors import CheckpointError, ConfigError, DataError
    from semantic_genesis.methods.base import StepContext
    from semantic_genesis.models.loading import load_pretrained
    from semantic_genesis.training.data import collate
    from semantic_genesis.utils.seeding import derive_seed

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run}: not a pretraining run folder (no config.yaml)")
    cfg = load_config(run / "config.yaml")
    if data is not None:
        cfg = replace(cfg, data=str(data))
    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    path = Path(weights) if weights not in ("best", "final") else run / "weights" / f"{weights}.safetensors"
    if weights == "best" and not path.is_file() and (run / "weights" / "final.safetensors").is_file():
        raise CheckpointError(f"{path}: not found: the run was never validated, so no network is its best "
                              "(no validation data, or it stopped before its first epoch ended); use --weights final")
    method = methods.build(cfg)
    model = method.build_model()
    load_pretrained(model, path, strict=True)
    model.eval()
    train_set, val_set = method.build_datasets()
    dataset = val_set if val_set is not None and len(val_set) else train_set
    if len(dataset) == 0:
        raise DataError(f"{cfg.data}: no cubes to show")
    batch = collate([dataset[i] for i in range(min(count, len(dataset)))])
    spacings = _cube_spacings(dataset, int(batch["image"].shape[0]), cfg)
    ctx = StepContext(epoch=0, step=0, batch_index=0, device=torch.device("cpu"),
                      generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "validation", 0)), training=False)
    with torch.no_grad():
        outputs = method.example_batch(model, batch, ctx)
    if not outputs:
        raise ConfigError(f"method {cfg.method.name!r} gives no example outputs to draw")
    examples = {k: v.detach().float().cpu() for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.ndim >= 4}
    return examples, spacings, cfg


def _cube_spacings(dataset, n: int, cfg) -> list:
    """Voxel spacing of the first ``n`` cubes of a store dataset (``None`` where unknown)."""
    from pathlib import Path

    from semantic_genesis.report._views import cube_spacing

    store = getattr(dataset, "store", None)
    if store is None:
        return [None] * n
    root = Path(getattr(dataset, "root", "."))
    size = list(store.item_shape)[1:]
    return [cube_spacing(store.record(i), size, (root.parent, Path.cwd()), cfg.intensity) for i in range(n)]


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_genesis.report._views import VIEW_NOTE, show_slice, spacing_text, unit_label
    from semantic_genesis.utils.atomic import write_figure, write_json

    examples, spacings, cfg = restoration_examples(args.run_dir, args.weights, args.count, args.data)
    order = [k for k in ("input", "output", "target") if k in examples] + sorted(k for k in examples if k not in ("input", "output", "target"))
    titles = {"input": "input (transformed)", "output": "output (restored)", "target": "target (original)"}
    n = examples[order[0]].shape[0]
    out = Path(args.out) if args.out else Path(args.run_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(n, len(order), figsize=(2.3 * len(order) + 1.2, 2.4 * n + 0.8), squeeze=False,
                             constrained_layout=True)
    scores = []
    image = None
    for i in range(n):
        row = {}
        if "target" in examples:
            for key in ("input", "output"):
                if key in examples:
                    row[f"{key}_mse"] = float(((examples[key][i] - examples["target"][i]) ** 2).mean())
        scores.append(row)
        for j, key in enumerate(order):
            ax = axes[i][j]
            image = show_slice(ax, examples[key][i, 0].numpy(), "axial", spacing=spacings[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles.get(key, key), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{'patch' if examples[key].dim() == 4 else 'cube'} {i}", fontsize=8)
            if f"{key}_mse" in row:
                ax.set_xlabel(f"MSE vs target {row[f'{key}_mse']:.4f}", fontsize=8)
    flat = examples[order[0]].dim() == 4  # 2D patches (B, C, H, W)
    label = unit_label(cfg.intensity)
    if flat and cfg.intensity.modality == "auto":  # a 2D set may mix radiographs and CT slices
        label = (f"intensity (CT: 0 = {cfg.intensity.hu_min:g} HU, 1 = {cfg.intensity.hu_max:g} HU; X-ray: "
                 f"{cfg.intensity.lower_percentile:g}th..{cfg.intensity.upper_percentile:g}th percentile)")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label=label)
    known = [s for s in spacings if s is not None]
    what = "validation patches (2D)" if flat else "mid axial slices of validation cubes"
    note = "rows and columns as stored" if flat else VIEW_NOTE
    fig.suptitle(f"{cfg.method.name} restorations ({Path(args.run_dir).name}, {args.weights} weights): {what}"
                 f"\n{note}; {spacing_text(known[0] if known else None)}", fontsize=9)
    figure = out / "restorations.png"
    write_figure(figure, fig, dpi=130)
    write_json(out / "restorations.json", {"run": str(args.run_dir), "weights": args.weights, "cubes": scores,
                                           "spacing_mm": [list(s) if s else None for s in spacings]})
    print(f"wrote {figure.resolve()}")
    return 0
