"""``semantic-genesis finetune``: fine-tune one initialisation on one target task.

Examples::

    semantic-genesis finetune --task ncc --init runs/sg/weights/best.safetensors \\
        --data phantom_luna16 --out runs/ncc_sg train.epochs=50
    semantic-genesis finetune --config finetune_ncs --task ncs --init scratch --data DATA --out runs/ncs
    semantic-genesis finetune --config finetune_dxc --init sg2d=runs/sg2d/weights/best.safetensors \
        --data CHESTXRAY14 --out runs/dxc_sg2d
    semantic-genesis finetune --config finetune_pxs --init sg2d=runs/sg2d/weights/best.safetensors \
        --data SIIM_ACR --out runs/pxs_sg2d finetune.iou=per_case

The run folder gets config.yaml, metrics.jsonl (one record per epoch), checkpoints/last.pt
(resume: rerun the same command, also after a kill mid-epoch), weights/best.safetensors (the
fine-tuned network of the best validation epoch), weights/final.safetensors (the last epoch's) and
result.json (test metrics of the best validation epoch). Under torchrun the run uses
DistributedDataParallel. One command at a time per run folder (RUN/.lock); Ctrl-C or SIGTERM writes
a checkpoint first (exit 130 / 143).
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "finetune"
HELP = "fine-tune scratch / pretrained weights on a target task (ncc, ncs, lcs, bms, dxc, pxs, ncc2d, ncs2d)"
ORDER = 60
DESCRIPTION = __doc__
FLAGS = {"task": "finetune.task", "init": "finetune.init"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, help="target task (ncc, ncs, lcs, bms, dxc, pxs; ncc2d, ncs2d: 2D on axial slices); same as finetune.task=")
    parser.add_argument("--init", default=None, help="scratch, a weights file, or NAME=PATH; same as finetune.init=")
    add_config_arguments(parser, data_help="task dataset folder (same as data=DIR)",
                         out_help="run folder (same as out=DIR); reruns resume")


def load_task_config(args: argparse.Namespace, flags: dict[str, str]):
    """The config of ``finetune`` / ``evaluate`` with its checks that need no data.

    Returns:
        ``(cfg, task)``; ``cfg`` is ``None`` when ``--print-config`` printed it.

    Raises:
        ConfigError: bad config, unknown task or model, or no data / output folder.
    """
    from semantic_genesis.commands._common import (
        check_names, load_command_config, print_config, require,
    )
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.trainer import check_config, primary_metric

    cfg = load_command_config(args, flags)
    if args.print_config:
        print_config(cfg)
        return None, None
    check_names(cfg, task=True, model=True)
    check_config(cfg)
    task = tasks.get(cfg.finetune.task)
    primary_metric(task, cfg)
    require(cfg.data, "task data folder", "--data DIR or data=DIR")
    require(cfg.out, "output folder", "--out DIR or out=DIR")
    return cfg, task  # the data is checked by reading it (task.load), still before anything is written


def built_architecture(cfg, task, init, log):
    """The config with ``model.width`` / ``model.norm`` of the network that will be built.

    A weights file fixes the architecture it is loaded into, whatever ``model.width`` says, and
    ``finetune.norm`` its batch norm (:func:`~semantic_genesis.finetune.models.finetune_norm`); the
    run's ``config.yaml`` must record what was built, and the user is told (one line).

    Raises:
        CheckpointError: the weights file is unreadable or not a network this task can use.
    """
    from semantic_genesis.config import replace
    from semantic_genesis.finetune.models import finetune_norm
    from semantic_genesis.models.loading import read_pretrained

    if init.path is None:
        norm = finetune_norm(cfg, cfg.model.norm)
        return cfg if norm == cfg.model.norm else replace(cfg, **{"model.norm": norm})
    args = read_pretrained(init.path).backbone_args
    file_norm = args.get("norm", cfg.model.norm)
    built = {"model.width": args.get("width", cfg.model.width), "model.norm": finetune_norm(cfg, file_norm)}
    if (built["model.width"], built["model.norm"]) != (cfg.model.width, cfg.model.norm):
        mapped = f" for its {file_norm} weights, finetune.norm" if built["model.norm"] != file_norm else ""
        log(f"init {init.name}: the network is built as its weights are (width {built['model.width']}, "
            f"norm {built['model.norm']}{mapped}), not as the config says (width {cfg.model.width}, norm "
            f"{cfg.model.norm}); config.yaml records what was built")
        cfg = replace(cfg, **built)
    return cfg


def check_init_files(inits) -> None:
    """Every initialisation's weights file exists (a one-line error otherwise)."""
    from semantic_genesis.errors import CheckpointError, describe_path

    for spec in inits:
        if spec.path is not None and not spec.path.is_file():
            raise CheckpointError(f"{describe_path(spec.path)}: weights file of initialisation {spec.name!r} not found")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import math
    from pathlib import Path

    from semantic_genesis.commands._common import check_output_folder, describe_output, dry_run_report, say
    from semantic_genesis.finetune.data import split_by_patient
    from semantic_genesis.finetune.leakage import check_pretraining_overlap, split_test_patients
    from semantic_genesis.finetune.models import parse_init

    cfg, task = load_task_config(args, FLAGS)
    if cfg is None:
        return 0
    init = parse_init(cfg.finetune.init)
    check_init_files([init])
    cfg = built_architecture(cfg, task, init, lambda message: print(message, flush=True))
    state = check_output_folder(cfg.out)
    say(args, f"reading {task.name} data from {cfg.data}")
    data = task.load(cfg.data, cfg)
    split_seed = cfg.seed if cfg.finetune.split_seed is None else cfg.finetune.split_seed
    split = split_by_patient(data, cfg.finetune.split, split_seed, cfg.finetune.label_fraction)
    sizes = ", ".join(f"{k}: {len(v)}" for k, v in split.items())
    overlap = check_pretraining_overlap(init, split_test_patients(data, split), task.name,
                                        cfg.finetune.allow_pretraining_overlap)  # refuses before any training
    if overlap.message:
        print(overlap.message, file=sys.stderr, flush=True)
    if args.dry_run:
        return dry_run_report("finetune", [
            f"data  {cfg.data}: {task.name}, {len(data)} samples from {len(set(data.patients))} patients; split {{{sizes}}}",
            describe_output(cfg.out, state),
            f"would fine-tune init {init.name}" + (f" ({init.path})" if init.path else "")
            + f" for up to {cfg.train.epochs} epochs",
        ])

    from semantic_genesis.config import save_config
    from semantic_genesis.finetune.trainer import run_finetune
    from semantic_genesis.utils.runlock import run_lock

    out = Path(cfg.out)

    def show(record: dict) -> None:
        keys = ("train_loss", *task.metrics)
        vals = ", ".join(f"{k}={record[k]:.4f}" for k in keys if isinstance(record.get(k), (int, float)))
        say(args, f"  epoch {record['epoch']}: {vals}{' (best)' if record.get('improved') else ''}")

    with run_lock(out):
        save_config(cfg, out / "config.yaml")
        say(args, f"{task.name}: {len(data)} samples, split {{{sizes}}}; init {init.name}")
        result = run_finetune(task, data, split, cfg, init, out, cfg.seed, on_epoch=show)
    from semantic_genesis.finetune.results import nan_to_none

    print(json.dumps({"status": result.status, "test": nan_to_none(result.test), "best_epoch": result.best_epoch,
                      "epochs": result.epochs}, indent=2))
    undefined = [label for label in task.label_names if not math.isfinite(result.test.get(f"{result.metric}/{label}", math.nan))]
    if undefined:
        print(f"n/a (no positive or no negative in the test split, left out of the mean {result.metric}): "
              + ", ".join(undefined))
    print(f"wrote {out / 'result.json'} and {out / 'weights' / 'best.safetensors'}")
    return 0
