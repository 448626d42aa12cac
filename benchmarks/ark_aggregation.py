"""Does aggregating datasets help? Ark's thesis measured on phantom chest X-ray datasets.

Ark (Ma, Pang, Gotway, Liang, MICCAI 2023) claims that one model trained on several datasets with
their own (partly overlapping) label spaces beats models trained on any one of them. This script
measures that claim on phantom datasets written in public layouts (each labels the same kinds of
findings in its own vocabulary), with three conditions trained by the library's engine:

* **single**: one model per dataset (the same recipe, that dataset only);
* **ark**: Ark on all datasets (one head each, cyclic passes, EMA teacher, consistency 0 -> 0.5);
* **ark_no_teacher**: Ark with the consistency coefficient 0 (heads and cyclic passes only).

and reports, per condition:

1. the **per-dataset mean AUC** of each dataset's head on its validation patients (the student);
2. **transfer** to a held-out task (Shenzhen tuberculosis, other patients, never trained on): a
   logistic regression on the frozen backbone's pooled features, AUC on held-out patients (for
   *single*, each dataset's model and their mean);
3. a **sex-bias analysis** as the paper's: the AUC of the Ark model on the validation images of each
   patient sex (the phantoms draw sex as a generation parameter; ChestX-ray14 and CheXpert record it).

Every number is printed in one table; nothing is tuned to favour a condition. Usage::

    OMP_NUM_THREADS=1 python benchmarks/ark_aggregation.py --out /tmp/ark_bench
    python benchmarks/ark_aggregation.py --patients 160 --epochs 20 --seeds 0,1,2 --out /tmp/ark_bench
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

SIZE = 32
# (name, layout, seed, finding rate, dataset entry): label spaces overlap partly (Cardiomegaly, effusion,
# pneumothorax and edema appear in the first two under different names; RSNA's classes in none).
DATASETS = (
    ("cxr14", "chestxray14", 11, 0.3,
     "{name: cxr14, layout: chestxray14, root: chestxray14, split: all, val_fraction: 0.3, "
     "labels: [Cardiomegaly, Effusion, Pneumothorax, Edema, Emphysema, Mass]}"),
    ("chexpert", "chexpert", 12, 0.3,
     "{name: chexpert, layout: chexpert, root: chexpert, split: train, val_fraction: 0.3, options: {uncertain: ones}, "
     "labels: [Cardiomegaly, Pleural Effusion, Pneumothorax, Lung Opacity, Lung Lesion]}"),
    ("rsna", "rsna_pneumonia", 13, 0.1,
     "{name: rsna, layout: rsna_pneumonia, root: rsna_pneumonia, options: {variant: 3class, dicom_header_demographics: true}, "
     "val_fraction: 0.3}"),
)
HELD_OUT = ("shenzhen", 14, 0.3)


def export(root: Path, patients: int) -> None:
    from semantic_genesis.phantoms.export import export_xray_cohort

    for _, layout, seed, rate, _ in DATASETS:
        export_xray_cohort(root / layout, patients, seed=seed, layout=layout, shape=(32, 32, 24), size=(SIZE, SIZE),
                           finding_rate=rate)
    name, seed, rate = HELD_OUT
    export_xray_cohort(root / name, patients, seed=seed, layout=name, shape=(32, 32, 24), size=(SIZE, SIZE),
                       finding_rate=rate)


def config(root: Path, out: Path, entries: list[str], seed: int, epochs: int, coefficient: float):
    from semantic_genesis.config import load_config

    return load_config("ark_2d_tiny", [
        f"data={root}", f"out={out}", f"seed={seed}", f"train.epochs={epochs}", "train.progress=false",
        "train.tensorboard=false", "train.log_every=50", f"method.options.image_size=[{SIZE},{SIZE}]",
        f"method.options.datasets=[{', '.join(entries)}]", f"method.options.coefficient={coefficient}",
        "method.options.export=student", "method.options.eval_teacher=false",
    ])


def trained(cfg):
    """Train (or reuse a finished run) and return ``(method, student)``."""
    from semantic_genesis import methods
    from semantic_genesis.models.loading import build_model_from_weights
    from semantic_genesis.training.trainer import train

    final = Path(cfg.out) / "weights" / "final.safetensors"
    if not final.is_file():
        train(cfg)
    return methods.build(cfg), build_model_from_weights(final).eval()


@torch.no_grad()
def predictions(method, model, d: int):
    """``(probabilities, targets, sex)`` of dataset ``d``'s validation images, scored by head ``d``."""
    from torch.utils.data import DataLoader

    from semantic_genesis.methods.ark_data import ArkImages
    from semantic_genesis.methods.ark_eval import head_probabilities
    from semantic_genesis.training.data import collate

    val = method.parts()[d][1]
    data = ArkImages([val], [method.specs[d].name], (SIZE, SIZE))
    probs, targets = [], []
    for batch in DataLoader(data, batch_size=32, collate_fn=collate):
        logits = method.predict(model, batch["image"])[d][0]
        probs.append(head_probabilities(logits, method.tasks[d]))
        targets.append(batch["target"][:, : method.num_classes[d]])
    return torch.cat(probs), torch.cat(targets), val.sex


def dataset_auc(method, model, d: int, sex: str | None = None) -> float:
    from semantic_genesis.methods.ark_eval import score_head

    probs, targets, sexes = predictions(method, model, d)
    if sex is not None:
        if sexes is None:
            return math.nan
        keep = torch.tensor([s == sex for s in sexes])
        probs, targets = probs[keep], targets[keep]
    if len(probs) == 0:
        return math.nan
    return score_head(method.specs[d].name, method.tasks[d], method.label_names[d], probs, targets).mean_auc


@torch.no_grad()
def transfer_auc(model, root: Path, seed: int) -> float:
    """Held-out task: logistic regression on frozen pooled features, AUC on held-out patients."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from semantic_genesis.io.datasets.cxr import read_labelled_images
    from semantic_genesis.methods.ark_data import load_image

    data = read_labelled_images(HELD_OUT[0], root / HELD_OUT[0])
    train, test = data.split_patients(0.4, seed=seed)
    feats = {}
    for part, images in (("train", train), ("test", test)):
        x = torch.stack([load_image(images, k, (SIZE, SIZE)) for k in range(len(images))])
        feats[part] = model.features(x).numpy()
    y_train, y_test = train.filled()[:, 0], test.filled()[:, 0]
    if len(set(y_train)) < 2 or len(set(y_test)) < 2:
        return math.nan
    scaler = StandardScaler().fit(feats["train"])
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(feats["train"]), y_train)
    return float(roc_auc_score(y_test, clf.decision_function(scaler.transform(feats["test"]))))


def fmt(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="working folder (data and runs; reruns reuse finished runs)")
    parser.add_argument("--patients", type=int, default=100, help="patients per dataset")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--fresh", action="store_true", help="delete OUT first")
    args = parser.parse_args()
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    root = out / "data"
    export(root, args.patients)
    print(f"data: {len(DATASETS)} datasets + held-out {HELD_OUT[0]}, {args.patients} patients each, "
          f"{SIZE}x{SIZE} ({time.perf_counter() - t0:.0f} s)")
    entries = [e for *_, e in DATASETS]
    names = [n for n, *_ in DATASETS]
    rows: dict[str, dict[str, list[float]]] = {}
    sex_rows: dict[str, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for condition, coefficient in (("ark", 0.5), ("ark_no_teacher", 0.0)):
            method, model = trained(config(root, out / f"{condition}_s{seed}", entries, seed, args.epochs, coefficient))
            row = rows.setdefault(condition, {})
            for d, name in enumerate(names):
                row.setdefault(name, []).append(dataset_auc(method, model, d))
                if condition == "ark":
                    for sex in ("F", "M"):
                        sex_rows.setdefault(f"{name}/{sex}", []).append(dataset_auc(method, model, d, sex))
            row.setdefault("transfer", []).append(transfer_auc(model, root, seed))
        row = rows.setdefault("single", {})
        transfers = []
        for d, name in enumerate(names):
            method, model = trained(config(root, out / f"single_{name}_s{seed}", [entries[d]], seed, args.epochs, 0.5))
            row.setdefault(name, []).append(dataset_auc(method, model, 0))
            auc = transfer_auc(model, root, seed)
            row.setdefault(f"transfer ({name} model)", []).append(auc)
            transfers.append(auc)
        row.setdefault("transfer", []).append(float(np.nanmean(transfers)))
    elapsed = time.perf_counter() - t0
    columns = names + ["transfer"]
    print()
    print(f"| condition | {' | '.join(f'{c} AUC' for c in columns)} |")
    print("|---|" + "---:|" * len(columns))
    labels = {"single": "one model per dataset", "ark": "Ark, all datasets", "ark_no_teacher": "Ark without teacher (c = 0)"}
    for condition in ("single", "ark", "ark_no_teacher"):
        print(f"| {labels[condition]} | {' | '.join(fmt(rows[condition][c]) for c in columns)} |")
    for name in names:
        key = f"transfer ({name} model)"
        print(f"| held-out transfer of the {name}-only model | {' | '.join([''] * len(names))} | {fmt(rows['single'][key])} |")
    print()
    print("| Ark model, validation images of | " + " | ".join(f"{n} AUC" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for sex, label in (("F", "female patients"), ("M", "male patients")):
        print(f"| {label} | " + " | ".join(fmt(sex_rows[f'{n}/{sex}']) for n in names) + " |")
    print()
    print(f"seeds {args.seeds}, {args.epochs} epochs, {args.patients} patients per dataset; {elapsed:.0f} s in all")


if __name__ == "__main__":
    main()
