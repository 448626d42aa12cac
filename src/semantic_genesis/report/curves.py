"""``semantic-genesis report curves RUN [RUN ...]``: training and validation curves from ``metrics.jsonl``.

Reads the ``metrics.jsonl`` of each run folder (``pretrain``, ``finetune``, or a trial folder of
``evaluate``) and draws, against the optimiser step:

* the losses (training records: solid; validation records: dashed with markers);
* the learning rate (log scale);
* the validation metrics (one panel per metric, e.g. AUC, IoU, Dice, or the classification accuracy of
  Semantic Genesis), with the training epoch means of the same metric where the run logs them.

Several runs are overlaid, one colour per run, so two learning rates or two methods can be compared on
one figure. Writes ``curves.png`` into ``--out`` (default ``RUN/figures`` for a single run).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

REPORT_NAME = "curves"
REPORT_HELP = "training / validation curves (loss, learning rate, validation metrics) of one or more runs"

# Bookkeeping fields of the records, not curves.
_NOT_CURVES = {"kind", "step", "epoch", "time", "best", "improved", "bad_epochs", "cubes_per_s", "data_wait",
               "world_size", "seconds"}
METRIC_NAMES = {"auc": "AUC", "iou": "IoU", "dice": "Dice", "acc": "accuracy", "accuracy": "accuracy",
                "ce": "cross-entropy", "mse": "MSE", "input_mse": "MSE of the input (baseline)"}


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding metrics.jsonl")
    parser.add_argument("--out", default=None, help="folder for curves.png (default: RUN/figures for one run)")
    parser.add_argument("--x", choices=("step", "epoch"), default="step", help="x-axis (default: step)")
    parser.add_argument("--log-loss", action="store_true",
                        help="logarithmic loss axis (automatic when the losses span more than 20x)")


def read_records(run: str | Path) -> list[dict[str, Any]]:
    """The JSON records of ``RUN/metrics.jsonl``.

    Raises:
        DataError: no ``metrics.jsonl``, or no training / validation record in it.
    """
    from semantic_genesis.errors import DataError, describe_path

    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{describe_path(path)}: not found; expected a run folder of pretrain, finetune or an evaluate trial")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{describe_path(path)}: line {number} is not JSON") from None
        if isinstance(record, dict):
            records.append(record)
    if not any(r.get("kind") in ("train", "validation") for r in records):
        raise DataError(f"{describe_path(path)}: no training or validation record yet")
    return records


def curves(records: Sequence[dict[str, Any]], x: str = "step") -> dict[str, dict[str, tuple[list, list]]]:
    """Group the records into panels of named curves.

    Returns:
        ``{"loss": {...}, "lr": {...}, "<metric>": {...}}``, each ``{curve name: (xs, ys)}``: curve
        names are ``"train loss"`` (training records: mean over the logging window), ``"train loss
        (epoch mean)"`` (validation records' ``train_loss``), ``"validation loss"``, ``"lr"``,
        ``"validation <metric>"`` and ``"train <metric> (epoch mean)"`` (validation records'
        ``train_<metric>``).
        Non-finite values are left out.
    """
    panels: dict[str, dict[str, tuple[list, list]]] = {}

    def add(panel: str, name: str, xv: Any, yv: Any) -> None:
        if isinstance(yv, bool) or not isinstance(yv, (int, float)) or not math.isfinite(yv) or xv is None:
            return
        xs, ys = panels.setdefault(panel, {}).setdefault(name, ([], []))
        xs.append(xv)
        ys.append(float(yv))

    for record in records:
        kind = record.get("kind")
        if kind not in ("train", "validation"):
            continue
        xv = record.get(x, record.get("step"))
        for key, value in record.items():
            if key in _NOT_CURVES:
                continue
            if key == "lr":
                add("lr", "lr", xv, value)
            elif key.endswith("loss"):
                if kind == "train":
                    add("loss", "train loss", xv, value)  # mean over the logging window
                elif key.startswith("train"):
                    add("loss", "train loss (epoch mean)", xv, value)
                else:
                    add("loss", "validation loss", xv, value)
            elif kind == "validation" and key.startswith("train_"):
                metric = key[len("train_"):]  # a training metric averaged over the epoch
                add(metric, f"train {metric} (epoch mean)", xv, value)
            elif kind == "validation":
                metric = key[4:] if key.startswith("val_") else key
                add(metric, f"validation {metric}", xv, value)
    return panels


def _label(runs: Sequence[Path]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in runs]


def draw(runs: Sequence[str | Path], out: str | Path, x: str = "step", log_loss: bool = False) -> Path:
    """Draw the curves of ``runs`` into ``out/curves.png``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_genesis.utils.atomic import write_figure

    runs = [Path(r) for r in runs]
    per_run = [curves(read_records(r), x) for r in runs]
    names = ["loss", "lr"] + sorted({p for c in per_run for p in c} - {"loss", "lr"})
    names = [n for n in names if any(n in c for c in per_run)]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False, constrained_layout=True)
    colours = plt.get_cmap("tab10")
    labels = _label(runs)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        for r, (panels, label) in enumerate(zip(per_run, labels)):
            for curve, (xs, ys) in sorted(panels.get(name, {}).items()):
                validation = curve.startswith("validation")
                tag = label if len(runs) > 1 else ""
                if name != "lr":  # "train loss", "validation auc", ... (prefixed by the run when overlaid)
                    tag = f"{tag}: {curve}" if tag else curve
                marker = "o" if validation else ("s" if curve.endswith("(epoch mean)") else None)
                ax.plot(xs, ys, color=colours(r % 10), linestyle="--" if validation else "-", marker=marker,
                        markersize=3, linewidth=1.3, alpha=0.6 if curve == "train loss" and len(panels["loss"]) > 1 else 1.0,
                        label=tag or None)
        title = {"loss": "loss", "lr": "learning rate"}.get(name, METRIC_NAMES.get(name, name))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step" if x == "step" else "epoch")
        ax.set_ylabel(title)
        values = [v for c in per_run for _, ys in c.get(name, {}).values() for v in ys if v > 0]
        wide = bool(values) and max(values) > 20 * min(values)  # e.g. two methods' losses of other scales
        if name == "lr" or (name == "loss" and (log_loss or wide)):
            ax.set_yscale("log")
        ax.grid(color="0.9", linewidth=0.8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("Training curves: " + ", ".join(labels) + " (solid: training, dashed: validation)", fontsize=10)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "curves.png"
    write_figure(path, fig, dpi=130)
    return path


def run_report(args: argparse.Namespace) -> int:
    from semantic_genesis.errors import ConfigError

    if args.out is None and len(args.runs) > 1:
        raise ConfigError("report curves of several runs needs --out DIR")
    out = args.out if args.out is not None else Path(args.runs[0]) / "figures"
    path = draw(args.runs, out, args.x, args.log_loss)
    print(f"wrote {path.resolve()}")
    return 0
