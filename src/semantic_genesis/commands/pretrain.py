"""``semantic-genesis pretrain``: self-supervised pretraining with a registered method.

Examples::

    semantic-genesis pretrain --config models_genesis_3d_tiny --data data/cubes --out runs/mg_tiny
    semantic-genesis pretrain --config models_genesis_3d --data data/cubes --out runs/mg train.amp=bf16
    semantic-genesis pretrain --config semantic_genesis_3d --patterns runs/sg/patterns --out runs/sg
    torchrun --nproc_per_node=4 -m semantic_genesis pretrain --config models_genesis_3d --data ... --out ...

method.name picks the method and method.options.KEY=VALUE sets its options (see
--list-methods for both). Cube methods read a cube set (--data, made by
'semantic-genesis cubes'); Semantic Genesis methods read a pattern set (--patterns, made by
'semantic-genesis discover'). The run folder receives config.yaml, metrics.jsonl,
checkpoints/last.pt, weights/final.safetensors and, when validation ran, weights/best.safetensors
(without validation data no network is called best). ``--score WEIGHTS`` trains nothing: it scores a
weights file with the method's own heads (Ark: every dataset by its head; per-class and mean AUC,
accuracy of multi-class sets; ``--split validation|training|test``) into OUT/scores.md and
OUT/scores.json. Rerunning the same command resumes from the
last checkpoint (raise train.epochs / train.max_steps to extend a finished run); Ctrl-C or SIGTERM
writes a checkpoint first (exit 130 / 143). One command at a time per run folder (RUN/.lock).
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "pretrain"
HELP = "self-supervised pretraining (Models Genesis, Semantic Genesis, baselines); DDP via torchrun"
ORDER = 40
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    add_config_arguments(parser, data_help="cube set of cube methods (same as data=DIR)",
                         out_help="run folder (same as out=DIR); reruns resume")
    parser.add_argument("--patterns", "-p", default=None, metavar="DIR",
                        help="pattern set of Semantic Genesis methods (same as patterns=DIR)")
    parser.add_argument("--score", default=None, metavar="WEIGHTS",
                        help="do not train: score a weights file of a method with its own heads (Ark: every dataset "
                             "by its head, per-class and mean AUC, accuracy) and write OUT/scores.md and scores.json")
    parser.add_argument("--split", default="validation", metavar="SPLIT",
                        help="with --score: validation (the run's validation images, default), training, or a split "
                             "name of every dataset's reader (e.g. test)")


def run(args: argparse.Namespace) -> int:
    import os

    from semantic_genesis import methods

    if args.list_methods:
        import dataclasses

        for name in methods.available():
            cls = methods.get(name)
            print(f"{name:26s} {cls.description}")
            options = getattr(cls, "options_class", None)
            if options is not None and dataclasses.fields(options):
                shown = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(options))
                print(f"{'':26s}   method.options: {shown}")
        return 0
    from semantic_genesis.commands._common import (
        check_input_path, check_names, check_output_folder, describe_output, dry_run_report,
        load_command_config, print_config, require,
    )

    cfg = load_command_config(args, {"patterns": "patterns"})
    if args.print_config:
        return print_config(cfg)
    require(cfg.out, "run folder", "--out DIR or out=DIR")
    check_names(cfg, method=True, model=True, transforms=True)
    for key in ("data", "patterns"):
        if getattr(cfg, key):
            check_input_path(getattr(cfg, key), "folder", key)
    if args.score is not None:
        return _score(args, cfg)
    state = check_output_folder(cfg.out)
    method = methods.build(cfg)
    train_set, val_set = method.build_datasets()  # reads the cube / pattern set: bad data fails here
    if args.dry_run:
        from pathlib import Path

        resumes = (Path(cfg.out) / "checkpoints" / "last.pt").is_file()
        steps = f"at most {cfg.train.max_steps} steps" if cfg.train.max_steps else f"{cfg.train.epochs} epochs"
        return dry_run_report("pretrain", [
            f"data  {cfg.patterns or cfg.data}: {len(train_set)} training and "
            f"{len(val_set) if val_set is not None else 0} validation samples",
            describe_output(cfg.out, state, "holds a checkpoint: the run resumes" if resumes else "no checkpoint yet"),
            f"would train method {cfg.method.name} ({cfg.model.name}, width {cfg.model.width:g}) for {steps}, "
            f"batch {cfg.train.batch_size}, {cfg.optim.name} lr {cfg.optim.lr:g}",
        ])
    del train_set, val_set
    from semantic_genesis.training.trainer import train
    from semantic_genesis.utils.runlock import run_lock

    with run_lock(cfg.out):
        result = train(cfg, method)
    if os.environ.get("RANK", "0") == "0":
        best = f", best validation {result.best:.6g}" if result.best is not None else ""
        weights = (f"weights {result.final_weights} and {result.best_weights}" if result.best_weights is not None
                   else f"weights {result.final_weights} ({result.best_note})")
        print(f"{cfg.method.name}: {result.step} steps, {result.epoch} epochs ({result.stop_reason}{best}); {weights}")
    return 0


def _score(args: argparse.Namespace, cfg) -> int:
    """``--score WEIGHTS``: the method's own evaluation of a weights file, tables into ``cfg.out``."""
    import json
    from pathlib import Path

    from semantic_genesis import methods
    from semantic_genesis.commands._common import check_input_path, say
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.utils.atomic import write_text

    check_input_path(args.score, "file", "--score")
    method = methods.build(cfg)
    score = getattr(method, "score_weights", None)
    if score is None:
        raise ConfigError(f"--score: method {cfg.method.name!r} has no heads of its own to score; it works for ark")
    say(args, f"scoring {args.score} on the {args.split} images of every dataset")
    results, markdown = score(args.score, args.split)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "scores.md", markdown)
    payload = {"weights": str(args.score), "split": args.split, "datasets": [r.as_dict() for r in results]}
    write_text(out / "scores.json", json.dumps(payload, indent=2) + "\n")
    print(markdown)
    print(f"wrote {out / 'scores.md'} and {out / 'scores.json'}")
    return 0
