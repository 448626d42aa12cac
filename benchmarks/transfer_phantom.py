"""Transfer benchmark on the phantom cohort: the papers' protocol at a larger scale, printing the table.

Pipeline (every stage is a ``semantic-genesis`` command, so every stage resumes when rerun):

1. a phantom CT pretraining cohort, and other patients in the LUNA16 layout (NCC) and the native layout (NCS);
2. for every initialisation given as ``NAME=method:METHOD``: pretraining of that method on the native
   scans (cube methods: ``cubes`` then ``pretrain``; pattern methods (semantic_genesis,
   self_classification, self_restoration_patterns): ``discover`` then ``pretrain``), ``--pretrain-steps``
   optimiser steps; ``NAME=PATH`` uses an existing weights file; ``scratch`` trains from random weights;
3. ``evaluate`` on every task (``--trials`` fine-tuning runs per initialisation, same test set);
4. ``report results``: the Table-2-shaped table, printed.

Examples::

    # CPU, about an hour: scratch vs Models Genesis vs Semantic Genesis, 5 trials
    python benchmarks/transfer_phantom.py --out bench/transfer --trials 5

    # GPU, paper-like protocol with baselines
    python benchmarks/transfer_phantom.py --out bench/transfer --patients 60 --trials 10 \\
        --pretrain-steps 5000 --inits scratch,mg=method:models_genesis,sg=method:semantic_genesis,\\
ae=method:autoencoder,inpaint=method:inpainting,shuffle=method:patch_shuffling,rubik=method:rubiks_cube \\
        --finetune-config finetune_tiny train.epochs=30 train.patience=10 train.device=cuda

    # Semantic Genesis Table 2 (rows: scratch, autoencoder, in-painting, patch-shuffling, Rubik's cube,
    # self-restoration = models_genesis, self-classification, Semantic Genesis) on the phantom tasks
    python benchmarks/transfer_phantom.py --preset table2 --out bench/table2 --trials 5 --pretrain-steps 1000

    # Semantic Genesis Fig. 2: each restoration method with and without the semantics add-on
    # (in-painting, patch-shuffling, Models Genesis); prints the pairs with t-tests after the table
    python benchmarks/transfer_phantom.py --preset fig2 --out bench/fig2 --trials 5 --pretrain-steps 1000

With the default ``--pretrain-config auto`` every method pretrains with its own tiny preset
preset ``<method>_3d_tiny`` (falling back to ``models_genesis_3d_tiny``), all cube methods
share one cube set and all pattern methods one pattern set (discovered with
preset ``semantic_genesis_3d_tiny``), so the rows differ only in the method.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

PATTERN_METHODS = ("semantic_genesis", "self_classification", "self_restoration_patterns",
                   "semantic_inpainting", "semantic_patch_shuffling", "semantic_models_genesis")
ROOT = Path(__file__).resolve().parents[1]

# Init lists of the paper's comparisons (NAME=method:METHOD entries are pretrained here).
PRESETS = {
    "table2": ["scratch", "autoencoder=method:autoencoder", "inpainting=method:inpainting",
               "patch_shuffling=method:patch_shuffling", "rubiks_cube=method:rubiks_cube",
               "models_genesis=method:models_genesis", "self_classification=method:self_classification",
               "semantic_genesis=method:semantic_genesis"],
    "fig2": ["scratch", "inpainting=method:inpainting", "semantic_inpainting=method:semantic_inpainting",
             "patch_shuffling=method:patch_shuffling", "semantic_patch_shuffling=method:semantic_patch_shuffling",
             "models_genesis=method:models_genesis", "semantic_models_genesis=method:semantic_models_genesis"],
}
# both: semantic_genesis is Models Genesis + semantics, so it is not pretrained a second time
PRESETS["all"] = PRESETS["table2"] + [e for e in PRESETS["fig2"] if e not in PRESETS["table2"]
                                      and not e.startswith("semantic_models_genesis=")]
# Fig. 2 pairs: (method without semantics, with semantics); semantic_models_genesis = semantic_genesis
FIG2_PAIRS = (("inpainting", "semantic_inpainting"), ("patch_shuffling", "semantic_patch_shuffling"),
              ("models_genesis", "semantic_models_genesis"), ("models_genesis", "semantic_genesis"))


def method_config(method: str, args: argparse.Namespace, discovery: bool = False) -> Path:
    """The pretraining config of ``method``: ``--pretrain-config``, or with ``auto`` the method's tiny
    preset (discovery: the Semantic Genesis tiny preset, so every pattern method shares one pattern set)."""
    if str(args.pretrain_config) != "auto":
        return Path(args.pretrain_config)
    from semantic_genesis.config import preset_path

    own = preset_path(f"{'semantic_genesis' if discovery else method}_3d_tiny")
    return own if own is not None else preset_path("models_genesis_3d_tiny")


def print_fig2_pairs(folders: list[str]) -> None:
    """Fig. 2: for each restoration method evaluated with and without semantics, the two means and the
    t-test between them (independent two-sample, two-sided), per task."""
    import json

    from scipy import stats

    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text(encoding="utf-8"))
        inits = res.get("inits", {})
        rows = [(a, b) for a, b in FIG2_PAIRS if a in inits and b in inits]
        if not rows:
            continue
        metric = res.get("metric", "metric")
        print(f"\nFig. 2 pairs, {res.get('task')} ({metric}, mean ± s.d. over trials):")
        for plain, semantic in rows:
            x, y = inits[plain].get("values") or [], inits[semantic].get("values") or []
            p = stats.ttest_ind(x, y).pvalue if len(x) > 1 and len(y) > 1 else float("nan")

            def fmt(v):
                return f"{100 * sum(v) / len(v):.2f} ± {100 * (stats.tstd(v) if len(v) > 1 else 0):.2f}" if v else "n/a"
            gain = 100 * (sum(y) / len(y) - sum(x) / len(x)) if x and y else float("nan")
            print(f"  {plain:>18}: {fmt(x)}   + semantics ({semantic}): {fmt(y)}   gain {gain:+.2f}   p = {p:.3g}")


def sh(args: list[str]) -> None:
    """Run one ``semantic-genesis`` command (in this Python), failing loudly."""
    cmd = [sys.executable, "-m", "semantic_genesis", *args]
    print("$ semantic-genesis " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def pretrain(name: str, method: str, args: argparse.Namespace, native: Path) -> Path:
    """Pretrain ``method`` on the native phantom scans; returns the best weights file."""
    out = args.out / "pretrain" / name
    config = method_config(method, args)
    # train.epochs is lifted so that --pretrain-steps alone sets the length of every method's run
    common = ["--config", str(config), f"method.name={method}", f"train.max_steps={args.pretrain_steps}",
              "train.epochs=1000000", "train.progress=false", *args.pretrain_overrides]
    if method in PATTERN_METHODS:
        discover = args.out / "discover"
        sh(["discover", "--config", str(method_config(method, args, discovery=True)), f"data={native}", f"out={discover}",
            *args.pretrain_overrides])
        sh(["pretrain", *common, f"data={native}", f"patterns={discover / 'patterns'}", f"out={out}"])
    else:
        cubes = args.out / "cubes"
        if not (cubes / "manifest.json").is_file():
            sh(["cubes", "--config", str(config), "--data", str(native), "--out", str(cubes), "--quiet"])
        sh(["pretrain", *common, f"data={cubes}", f"out={out}"])
    weights = out / "weights" / "best.safetensors"
    if not weights.is_file():
        weights = out / "weights" / "final.safetensors"
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/transfer_phantom"))
    p.add_argument("--patients", type=int, default=48, help="phantom patients of the target-task cohort")
    p.add_argument("--tasks", default="ncc,ncs", help="comma-separated target tasks (phantom: ncc, ncs)")
    p.add_argument("--inits", default=None,
                   help="scratch, NAME=PATH (weights) or NAME=method:METHOD (pretrained here); default: the "
                        "--preset's list, else scratch,mg=method:models_genesis,sg=method:semantic_genesis")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="table2: the paper's Table 2 rows; fig2: each restoration method with and without "
                        "semantics; all: both (appended to --inits when both are given)")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--pretrain-config", default="auto",
                   help="config of discover/cubes/pretrain for every method, or auto: the preset <method>_3d_tiny")
    p.add_argument("--pretrain-overrides", nargs="*", default=[], help="KEY=VALUE for discover/pretrain")
    p.add_argument("--pretrain-patients", type=int, default=24, help="patients of the pretraining cohort (other patients)")
    p.add_argument("--finetune-config", type=Path, default=None,
                   help="fine-tuning config for every task (default: the preset finetune_tiny for NCC, "
                        "finetune_tiny_ncs for NCS)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="fine-tuning config overrides")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    if args.inits is None:
        args.inits = ",".join(PRESETS[args.preset]) if args.preset else "scratch,mg=method:models_genesis,sg=method:semantic_genesis"
    elif args.preset:
        args.inits = ",".join(dict.fromkeys([s.strip() for s in args.inits.split(",") if s.strip()] + PRESETS[args.preset]))
    started = time.perf_counter()

    # Pretraining scans and target-task patients are different patients (the paper excludes the target
    # tasks' test images from pretraining): other cohort seeds.
    luna16, native = args.out / "data" / "luna16", args.out / "data" / "native"
    scans = args.out / "data" / "pretrain_ct"
    sh(["phantom", "ct", "--patients", str(args.pretrain_patients), "--seed", "0", "--out", str(scans), "--quiet"])
    sh(["phantom", "ct", "--patients", str(args.patients), "--seed", "1000", "--layout", "luna16", "--out", str(luna16), "--quiet"])
    sh(["phantom", "ct", "--patients", str(args.patients), "--seed", "1000", "--layout", "native", "--out", str(native), "--quiet"])

    entries = []
    for item in [s.strip() for s in args.inits.split(",") if s.strip()]:
        if "=" in item and item.split("=", 1)[1].startswith("method:"):
            name, method = item.split("=", 1)[0], item.split("method:", 1)[1]
            entries.append(f"{name}={pretrain(name, method, args, scans)}")
        else:
            entries.append(item)
    data = {"ncc": luna16, "ncs": native}
    folders = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        if task not in data:
            raise SystemExit(f"task {task!r}: the phantom benchmark provides {', '.join(data)}")
        folder = args.out / "evaluate" / task
        ft_config = args.finetune_config or ("finetune_tiny_ncs" if task == "ncs" else "finetune_tiny")
        sh(["evaluate", "--task", task, "--data", str(data[task]), "--inits", ",".join(entries), "--trials",
            str(args.trials), "--out", str(folder), "--config", str(ft_config), *args.overrides])
        folders.append(str(folder))
    sh(["report", "results", *folders, "--out", str(args.out / "table")])
    print_fig2_pairs(folders)
    print(f"\nmachine: {platform.platform()}, {platform.processor() or platform.machine()}; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
