"""``semantic-genesis discover``: Semantic Genesis self-discovery -> a pattern set.

Examples::

    semantic-genesis discover --config semantic_genesis_3d --data SCANS --out RUN
    semantic-genesis discover --config semantic_genesis_3d_tiny --data data/ct --out runs/sg_tiny discovery.num_classes=4

Self-discovery of anatomical patterns (Haghighi et al., MICCAI 2020): trains an autoencoder on whole
scans, embeds every patient, finds each reference patient's top-K nearest patients, crops C fixed
coordinates in all of them at several resolutions and writes the labelled pattern set to
RUN/patterns (intermediate results in RUN/discovery). Rerunning the same command resumes where it
stopped; one command at a time per run folder (RUN/.lock). Pretrain on the result with: semantic-genesis pretrain --config ... patterns=RUN/patterns
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "discover"
HELP = "self-discovery: autoencoder, patient neighbours, coordinates -> pattern set (Semantic Genesis)"
ORDER = 30
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, data_help="scans folder (same as data=DIR)",
                         out_help="run folder (same as out=DIR); the pattern set goes to OUT/patterns; reruns resume")


def run(args: argparse.Namespace) -> int:
    from semantic_genesis.commands._common import (
        check_input_path, check_output_folder, describe_output, dry_run_report, load_command_config,
        print_config, require, say,
    )

    cfg = load_command_config(args)
    if args.print_config:
        return print_config(cfg)
    require(cfg.data, "scans folder", "--data DIR or data=DIR")
    require(cfg.out, "run folder", "--out DIR or out=DIR")
    check_input_path(cfg.data, "scans folder or file")
    if cfg.discovery.ae_weights:
        check_input_path(cfg.discovery.ae_weights, "autoencoder weights file", "discovery.ae_weights")
    state = check_output_folder(cfg.out)
    from semantic_genesis.discovery.patterns import check_multires
    from semantic_genesis.discovery.plan import check_counts
    from semantic_genesis.discovery.scans import spatial_dims, split_patients
    from semantic_genesis.io.datasets import list_scans

    check_multires(cfg.discovery)
    dims = spatial_dims(cfg.discovery)  # also checks that the 2D / 3D settings agree
    patients = split_patients(list_scans(cfg.data, images2d=dims == 2), cfg.discovery.val_fraction, cfg.seed)
    n_train = sum(p.split == "train" for p in patients)
    check_counts(cfg.discovery, n_train, len(patients) - n_train)
    if args.dry_run:
        d = cfg.discovery
        ae = f"autoencoder weights {d.ae_weights}" if d.ae_weights else f"train the autoencoder ({d.ae_epochs} epochs max)"
        return dry_run_report("discover", [
            f"data  {cfg.data}: {len(patients)} patients ({n_train} train, {len(patients) - n_train} validation)",
            describe_output(cfg.out, state, "finished stages are reused"),
            f"would {ae}, find K={d.num_neighbours} neighbours, write C={d.num_classes} classes of "
            f"{tuple(d.pattern_size)} patterns at {d.num_resolutions} resolution(s) to {cfg.out}/patterns",
        ])

    from semantic_genesis.discovery.pipeline import run_discovery
    from semantic_genesis.utils.runlock import run_lock

    with run_lock(cfg.out):
        result = run_discovery(cfg, cfg.data, cfg.out, log=lambda message: say(args, message))
    n_train = sum(1 for s in result.splits if s == "train")
    print(
        f"pattern set: {result.patterns} ({cfg.discovery.num_classes} classes from {len(result.groups)} "
        f"reference(s), {n_train} train / {len(result.splits) - n_train} validation patients)"
    )
    return 0
