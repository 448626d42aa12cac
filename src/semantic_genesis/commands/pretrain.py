"""``semantic-genesis pretrain``: self-supervised pretraining with a registered method.

Examples::

    semantic-genesis pretrain --config configs/models_genesis_3d_tiny.yaml data=data/cubes out=runs/mg_tiny
    semantic-genesis pretrain --config configs/models_genesis_3d.yaml data=data/cubes out=runs/mg train.amp=bf16
    torchrun --nproc_per_node=4 -m semantic_genesis pretrain --config configs/models_genesis_3d.yaml data=... out=...

``method.name`` picks the method and ``method.options.KEY=VALUE`` sets its options (see
``--list-methods`` for both). The run folder receives config.yaml,
metrics.jsonl, checkpoints/last.pt and weights/{best,final}.safetensors. Rerunning the same command
resumes from the last checkpoint (raise ``train.epochs`` / ``train.max_steps`` to extend a finished run).
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments, load_command_config

NAME = "pretrain"
HELP = "self-supervised pretraining (Models Genesis, Semantic Genesis, baselines); DDP via torchrun"
ORDER = 40
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semantic_genesis import methods

    if args.list_methods:
        import dataclasses

        for name in methods.available():
            cls = methods.get(name)
            print(f"{name:22s} {cls.description}")
            options = getattr(cls, "options_class", None)
            if options is not None and dataclasses.fields(options):
                shown = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(options))
                print(f"{'':22s}   method.options: {shown}")
        return 0
    from semantic_genesis.training.trainer import train

    cfg = load_command_config(args)
    methods.get(cfg.method.name)  # unknown method: a clear error before any set-up
    result = train(cfg)
    import os

    if os.environ.get("RANK", "0") == "0":
        best = f", best validation {result.best:.6g}" if result.best is not None else ""
        print(
            f"{cfg.method.name}: {result.step} steps, {result.epoch} epochs ({result.stop_reason}{best}); "
            f"weights {result.final_weights} and {result.best_weights}"
        )
    return 0
