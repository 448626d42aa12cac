"""``semantic-genesis finetune``: fine-tune one initialisation on one target task.

Example::

    semantic-genesis finetune --task ncc --init runs/sg/weights/best.safetensors \\
        data=phantom_luna16 out=runs/ncc_sg train.epochs=50

The run folder gets ``config.yaml``, ``metrics.jsonl`` (one record per epoch), ``checkpoints/last.pt``
(resume: rerun the same command, also after a kill mid-epoch), ``weights/best.safetensors`` (the
fine-tuned network of the best validation epoch), ``weights/final.safetensors`` (the last epoch's) and
``result.json`` (test metrics of the best validation epoch). Under ``torchrun`` the run uses
DistributedDataParallel.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "finetune"
HELP = "fine-tune scratch / pretrained weights on a target task (ncc, ncs, lcs, bms)"
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, help="target task (ncc, ncs, lcs, bms); default finetune.task")
    parser.add_argument("--init", default=None, help="scratch, a weights file, or NAME=PATH; default finetune.init")
    parser.add_argument("--data", default=None, help="task dataset folder (same as data=DIR)")
    parser.add_argument("--out", default=None, help="run folder (same as out=DIR)")
    add_config_arguments(parser)


def apply_common(args: argparse.Namespace):
    """Load the config and fold ``--task``/``--data``/``--out`` (and ``--init``) into it."""
    from semantic_genesis.commands._common import load_command_config
    from semantic_genesis.config import replace
    from semantic_genesis.errors import ConfigError

    cfg = load_command_config(args)
    changes = {}
    if args.task:
        changes["finetune.task"] = args.task
    if args.data:
        changes["data"] = args.data
    if args.out:
        changes["out"] = args.out
    if getattr(args, "init", None):
        changes["finetune.init"] = args.init
    if changes:
        cfg = replace(cfg, **changes)
    if not cfg.data:
        raise ConfigError("no task data folder: pass --data DIR or data=DIR")
    if not cfg.out:
        raise ConfigError("no output folder: pass --out DIR or out=DIR")
    return cfg


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from semantic_genesis.config import save_config
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.data import split_by_patient
    from semantic_genesis.finetune.models import parse_init
    from semantic_genesis.finetune.trainer import run_finetune

    cfg = apply_common(args)
    task = tasks.get(cfg.finetune.task)
    init = parse_init(cfg.finetune.init)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    print(f"reading {task.name} data from {cfg.data}")
    data = task.load(cfg.data, cfg)
    split_seed = cfg.seed if cfg.finetune.split_seed is None else cfg.finetune.split_seed
    split = split_by_patient(data, cfg.finetune.split, split_seed, cfg.finetune.label_fraction)
    print(f"{task.name}: {len(data)} samples, split {{{', '.join(f'{k}: {len(v)}' for k, v in split.items())}}}; init {init.name}")

    def show(record: dict) -> None:
        keys = ("train_loss", *task.metrics)
        vals = ", ".join(f"{k}={record[k]:.4f}" for k in keys if isinstance(record.get(k), (int, float)))
        print(f"  epoch {record['epoch']}: {vals}{' (best)' if record.get('improved') else ''}")

    result = run_finetune(task, data, split, cfg, init, out, cfg.seed, on_epoch=show)
    print(json.dumps({"status": result.status, "test": result.test, "best_epoch": result.best_epoch,
                      "epochs": result.epochs}, indent=2))
    print(f"wrote {out / 'result.json'} and {out / 'weights' / 'best.safetensors'}")
    return 0
