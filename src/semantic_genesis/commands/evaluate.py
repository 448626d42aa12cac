"""``semantic-genesis evaluate``: the papers' protocol (trials, mean ± s.d., t-tests, table, chart).

Example (Semantic Genesis Table 2 protocol, 10 trials per initialisation)::

    semantic-genesis evaluate --config finetune_tiny --task ncc --data phantom_luna16 \\
        --inits scratch,mg=runs/mg/weights/best.safetensors,sg=runs/sg/weights/best.safetensors \\
        --trials 10 --out results/ncc

Writes results.csv, results.json, results.md, results.tex and results.png into --out; each trial
lives in OUT/trials/<init>/trial_<k>/. While trials are running, results.md says how many are done
("partial: 2/6 trials done"). Rerunning resumes: finished trials are not re-run.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "evaluate"
HELP = "fine-tune every initialisation N times on a task; mean ± s.d., t-tests vs best, table and chart"
ORDER = 65
DESCRIPTION = __doc__
FLAGS = {"task": "finetune.task", "inits": "finetune.inits", "trials": "finetune.trials"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, help="target task (ncc, ncs, lcs, bms); same as finetune.task=")
    parser.add_argument(
        "--inits", default=None,
        help="comma-separated initialisations: scratch, NAME=PATH (weights file); same as finetune.inits=[...]",
    )
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per initialisation (paper: 10); same as finetune.trials=")
    add_config_arguments(parser, data_help="task dataset folder (same as data=DIR)",
                         out_help="output folder (same as out=DIR); reruns resume")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from semantic_genesis.commands._common import check_output_folder, describe_output, dry_run_report, say
    from semantic_genesis.commands.finetune import check_init_files, load_task_config
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.finetune.models import parse_inits
    from semantic_genesis.finetune.protocol import check_inits, protocol_split

    if args.inits is not None:
        args.inits = [e.strip() for e in args.inits.split(",") if e.strip()]
    cfg, task = load_task_config(args, FLAGS)
    if cfg is None:
        return 0
    inits = parse_inits(list(cfg.finetune.inits))
    check_init_files(inits)
    trials = cfg.finetune.trials
    if trials < 1:
        raise ConfigError(f"finetune.trials must be >= 1, got {trials}")
    state = check_output_folder(cfg.out)
    say(args, f"reading {task.name} data from {cfg.data}")
    data = task.load(cfg.data, cfg)
    # refuses weights pretrained on a test patient before anything is written (the protocol checks again)
    warned = [c.message for c in check_inits(cfg, task.name, data, protocol_split(cfg, data), inits) if c.message]
    for message in warned:
        print(message, file=sys.stderr, flush=True)
    if args.dry_run:
        return dry_run_report("evaluate", [
            f"data  {cfg.data}: {task.name}, {len(data)} samples from {len(set(data.patients))} patients",
            describe_output(cfg.out, state, "finished trials are skipped"),
            f"would run {trials} trial(s) of each of {', '.join(s.name for s in inits)} "
            f"({trials * len(inits)} fine-tuning runs of up to {cfg.train.epochs} epochs)",
        ])

    from semantic_genesis.finetune.protocol import run_protocol

    say(args, f"evaluate {task.name}: inits {', '.join(s.name for s in inits)}; {trials} trials each")
    run_protocol(cfg, cfg.data, inits, trials, cfg.out, data=data,
                 log=lambda message: None if message in warned else say(args, message))
    out = Path(cfg.out)
    print()
    print((out / "results.md").read_text(encoding="utf-8"))
    written = [f for f in ("results.csv", "results.json", "results.tex", "results.png") if (out / f).is_file()]
    print(f"wrote {out / 'results.md'}, {', '.join(written)}")
    return 0
