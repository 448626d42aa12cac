"""``semantic-genesis discover``: Semantic Genesis self-discovery -> a pattern set.

Usage::

    semantic-genesis discover --config configs/semantic_genesis_3d.yaml data=SCANS out=RUN [key=value ...]

Trains the autoencoder on whole scans, embeds every patient, finds each reference's nearest
patients, samples coordinates and writes the multi-resolution pattern set to ``RUN/patterns``
(intermediate results in ``RUN/discovery``). Rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments, load_command_config

NAME = "discover"
HELP = "self-discovery: autoencoder, patient neighbours, coordinates -> pattern set (Semantic Genesis)"
ORDER = 30
DESCRIPTION = (
    "Self-discovery of anatomical patterns (Semantic Genesis): train an autoencoder on whole scans, "
    "find each reference patient's top-K neighbours, crop C fixed coordinates in all of them at several "
    "resolutions and write the labelled pattern set to OUT/patterns. Needs data=SCANS and out=RUN; "
    "resumes when rerun."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semantic_genesis.discovery.pipeline import run_discovery
    from semantic_genesis.errors import ConfigError

    cfg = load_command_config(args)
    if not cfg.data:
        raise ConfigError("discover needs data=FOLDER (the scans)")
    if not cfg.out:
        raise ConfigError("discover needs out=FOLDER (the run folder)")
    result = run_discovery(cfg, cfg.data, cfg.out)
    n_train = sum(1 for s in result.splits if s == "train")
    print(
        f"pattern set: {result.patterns} ({cfg.discovery.num_classes} classes from {len(result.groups)} "
        f"reference(s), {n_train} train / {len(result.splits) - n_train} validation patients)"
    )
    return 0
