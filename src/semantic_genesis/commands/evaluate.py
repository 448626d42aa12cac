"""``semantic-genesis evaluate``: the papers' protocol (trials, mean ± s.d., t-tests, table, chart).

Example (Semantic Genesis Table 2 protocol, 10 trials per initialisation)::

    semantic-genesis evaluate --config finetune_tiny --task ncc --data phantom_luna16 \\
        --inits scratch,mg=runs/mg/weights/best.safetensors,sg=runs/sg/weights/best.safetensors \\
        --trials 10 --out results/ncc

Writes results.csv, results.json, results.md, results.tex and results.png into --out; each trial
lives in OUT/trials/<init>/trial_<k>/. While trials are running, results.md says how many are done
("partial: 2/6 trials done"). Rerunning resumes: finished trials are not re-run. One command at a
time per output folder (OUT/.lock).

The 2D slice-based solutions of Semantic Genesis Fig. 3 (``ncc2d``, ``ncs2d``: 2D networks on axial
slices, scored on the test units of ``ncc`` / ``ncs``) are evaluated like any task; ``report results``
given both folders puts their rows next to the 3D rows (a ``dims`` column)::

    semantic-genesis evaluate --config finetune_ncc2d --data LUNA16 --inits scratch,mg2d=mg2d.safetensors --out results/ncc2d
    semantic-genesis report results results/ncc results/ncc2d --out results/fig3_ncc

Label efficiency and linear probes (nested subsets of the training patients, the same for every
initialisation; the validation and test sets never change)::

    semantic-genesis evaluate --config finetune_ncc --data LUNA16 --inits scratch,sg=sg.safetensors \\
        --label-fractions 0.1,0.25,0.5,1.0 --mode finetune,linear_probe --out results/ncc_sweep

runs every (mode, fraction) as above in OUT/<mode>/fraction_<f>/, indexes them in OUT/sweep.json and
writes OUT/results.md (one table per fraction, fine-tuning and linear-probe columns side by side,
t-tests vs the best within each column, the test set's patients and positives under every table)
and OUT/label_efficiency.png (metric vs fraction, mean ± s.d., one line per initialisation).
``--ttest welch`` uses Welch's unequal-variance t-test instead of Student's (the papers').
``finetune.equal_steps=true`` scales train.epochs by (full / kept training samples) so that every
fraction gets about the optimiser steps of the full training set (default: the same epochs).
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "evaluate"
HELP = "fine-tune every initialisation N times on a task; mean ± s.d., t-tests vs best, table and chart"
ORDER = 65
DESCRIPTION = __doc__
FLAGS = {"task": "finetune.task", "inits": "finetune.inits", "trials": "finetune.trials",
         "label_fractions": "finetune.label_fractions", "mode": "finetune.modes", "ttest": "finetune.ttest"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, help="target task (ncc, ncs, lcs, bms, dxc, pxs; ncc2d, ncs2d: 2D on axial slices); same as finetune.task=")
    parser.add_argument(
        "--inits", default=None,
        help="comma-separated initialisations: scratch, NAME=PATH (weights file); same as finetune.inits=[...]",
    )
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per initialisation (paper: 10); same as finetune.trials=")
    parser.add_argument("--label-fractions", default=None, metavar="F,F,...",
                        help="label-efficiency sweep: fractions of the training patients, e.g. 0.1,0.25,0.5,1.0 "
                             "(nested subsets, the same for every initialisation); same as finetune.label_fractions=[...]")
    parser.add_argument("--mode", default=None, metavar="MODE[,MODE]",
                        help="finetune (whole network) and/or linear_probe (frozen encoder: GAP + linear layer, or a "
                             "trained decoder for segmentation); same as finetune.modes=[...]")
    parser.add_argument("--ttest", default=None, choices=("student", "welch"),
                        help="t-test against the best: student (paper, default) or welch; same as finetune.ttest=")
    add_config_arguments(parser, data_help="task dataset folder (same as data=DIR)",
                         out_help="output folder (same as out=DIR); reruns resume")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from semantic_genesis.commands._common import check_output_folder, describe_output, dry_run_report, say
    from semantic_genesis.commands.finetune import check_init_files, load_task_config
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.finetune.models import parse_inits
    from semantic_genesis.finetune.protocol import MODE_LABELS, sweep_settings
    from semantic_genesis.finetune.protocol import check_inits, protocol_split

    if args.inits is not None:
        args.inits = [e.strip() for e in args.inits.split(",") if e.strip()]
    if args.label_fractions is not None:
        try:
            args.label_fractions = [float(e) for e in args.label_fractions.split(",") if e.strip()]
        except ValueError:
            raise ConfigError(f"--label-fractions {args.label_fractions}: expected comma-separated numbers "
                              "such as 0.1,0.25,0.5,1.0") from None
    if args.mode is not None:
        args.mode = [e.strip() for e in args.mode.split(",") if e.strip()]
    cfg, task = load_task_config(args, FLAGS)
    if cfg is None:
        return 0
    inits = parse_inits(list(cfg.finetune.inits))
    check_init_files(inits)
    trials = cfg.finetune.trials
    if trials < 1:
        raise ConfigError(f"finetune.trials must be >= 1, got {trials}")
    settings = sweep_settings(cfg)
    setting_names = ", ".join(f"{MODE_LABELS[m]} at {f:g}" for m, f in settings)
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
            f"would run {trials} trial(s) of each of {', '.join(s.name for s in inits)} in {len(settings)} setting(s) "
            f"({setting_names}): {trials * len(inits) * len(settings)} fine-tuning runs of up to {cfg.train.epochs} epochs",
        ])

    from semantic_genesis.finetune.protocol import run_sweep
    from semantic_genesis.utils.runlock import run_lock

    say(args, f"evaluate {task.name}: inits {', '.join(s.name for s in inits)}; {trials} trials each; {setting_names}")
    out = Path(cfg.out)
    merged = None
    if len(settings) > 1:
        from semantic_genesis.report.results import merge_results

        def merged() -> None:  # the sweep's tables and curves so far, after every setting
            merge_results([out], out)

    with run_lock(cfg.out):
        run_sweep(cfg, cfg.data, inits, trials, out, data=data, on_setting=merged,
                  log=lambda message: None if message in warned else say(args, message))
    print()
    print((out / "results.md").read_text(encoding="utf-8"))
    written = [f for f in ("results.csv", "results.json", "results.tex", "results.png", "label_efficiency.png")
               if (out / f).is_file()]
    print(f"wrote {out / 'results.md'}, {', '.join(written)}")
    return 0
