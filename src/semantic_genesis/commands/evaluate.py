"""``semantic-genesis evaluate``: the papers' protocol (trials, mean ± s.d., t-tests, table, chart).

Example (Semantic Genesis Table 2 protocol, 10 trials per initialisation)::

    semantic-genesis evaluate --task ncc --data phantom_luna16 \\
        --inits scratch,mg=runs/mg/weights/best.safetensors,sg=runs/sg/weights/best.safetensors \\
        --trials 10 --out results/ncc --config configs/finetune_tiny.yaml

Writes ``results.csv``, ``results.json``, ``results.md`` and ``results.png`` into ``--out``; each
trial lives in ``OUT/trials/<init>/trial_<k>/``. Rerunning resumes: finished trials are not re-run.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "evaluate"
HELP = "fine-tune every initialisation N times on a task; mean ± s.d., t-tests vs best, table and chart"
ORDER = 65


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, help="target task (ncc, ncs, lcs, bms); default finetune.task")
    parser.add_argument("--data", default=None, help="task dataset folder (same as data=DIR)")
    parser.add_argument(
        "--inits", default=None,
        help="comma-separated initialisations: scratch, NAME=PATH (weights file); default finetune.inits",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials per initialisation (default finetune.trials, paper: 10)")
    parser.add_argument("--out", default=None, help="output folder (same as out=DIR)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semantic_genesis.commands.finetune import apply_common
    from semantic_genesis.finetune.models import parse_inits
    from semantic_genesis.finetune.protocol import run_protocol

    args.init = None
    cfg = apply_common(args)
    inits = parse_inits(args.inits if args.inits else list(cfg.finetune.inits))
    trials = args.trials if args.trials is not None else cfg.finetune.trials
    print(f"evaluate {cfg.finetune.task}: inits {', '.join(s.name for s in inits)}; {trials} trials each")
    run_protocol(cfg, cfg.data, inits, trials, cfg.out)
    out = Path(cfg.out)
    print()
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.md'}, results.csv, results.json" + (", results.png" if (out / "results.png").is_file() else ""))
    return 0
