"""``semantic-genesis cubes``: cut a cube set (Models Genesis pretraining data) out of a scans folder.

Examples::

    semantic-genesis cubes --data data/ct --out data/cubes                      # paper defaults, 64x64x32
    semantic-genesis cubes --config models_genesis_3d_tiny --data data/ct --out data/cubes_tiny
    semantic-genesis cubes --data data/luna16 --out data/cubes cubes.cubes_per_scan=64 cubes.dtype=uint8
    semantic-genesis cubes --config models_genesis_2d --data data/chestxray14 --out data/patches   # 2D, 224x224

For every scan (any layout the readers recognise: native phantoms, LUNA16, LiTS, BraTS, or a
folder of volumes) it samples cubes.cubes_per_scan cubes of cubes.cube_size voxels that pass the
content test (by default: mostly air inside the body), splits train / validation / test by patient
(LUNA16: by subset, as the official code; cubes.split), and writes memory-mappable shards with a
manifest that records each split's patients. A rerun into the same folder resumes (scans already
done are skipped); scans too small for the cube size are reported and skipped. One command at a
time per cube-set folder (OUT/.lock).

A cubes.cube_size of two values [H, W] makes a 2D patch set (items (1, H, W)) for the 2D methods:
patches of radiographs (the chest X-ray layouts, the phantom radiographs, any folder of PNG / JPEG /
DICOM radiographs) and of axial slices of CT or MRI volumes, with the same content tests and splits.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments

NAME = "cubes"
HELP = "cut random sub-volumes (a cube set) out of scans for Models Genesis pretraining"
ORDER = 20
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, data_help="scans folder (same as data=DIR)",
                         out_help="cube-set folder (same as out=DIR); reruns resume")


def run(args: argparse.Namespace) -> int:
    from semantic_genesis.commands._common import (
        check_input_path, check_output_folder, describe_output, dry_run_report, load_command_config,
        print_config, require,
    )
    from semantic_genesis.errors import ConfigError

    cfg = load_command_config(args)
    if args.print_config:
        return print_config(cfg)
    require(cfg.data, "scans folder", "--data DIR or data=DIR")
    require(cfg.out, "cube-set folder", "--out DIR or out=DIR")
    if cfg.cubes.cubes_per_scan <= 0:
        raise ConfigError(f"cubes.cubes_per_scan must be > 0, got {cfg.cubes.cubes_per_scan}")
    check_input_path(cfg.data, "scans folder or file")
    state = check_output_folder(cfg.out)
    from semantic_genesis.io.datasets import list_scans

    from semantic_genesis.cubes import patch_mode

    patches = patch_mode(cfg.cubes.cube_size)
    refs = list_scans(cfg.data, images2d=patches)
    if args.dry_run:
        patients = len({r.patient_id for r in refs})
        return dry_run_report("cubes", [
            f"data  {cfg.data}: {len(refs)} scans of {patients} patients",
            describe_output(cfg.out, state, "scans already cut are skipped"),
            f"would cut up to {cfg.cubes.cubes_per_scan} {'patches' if patches else 'cubes'} of "
            f"{tuple(cfg.cubes.cube_size)} {'pixels' if patches else 'voxels'} per scan "
            f"({cfg.cubes.content_test} content test), split {cfg.cubes.split if isinstance(cfg.cubes.split, str) else list(cfg.cubes.split)} by patient",
        ])

    from semantic_genesis.cubes import generate_cubes
    from semantic_genesis.utils.runlock import run_lock

    with run_lock(cfg.out):
        summary = generate_cubes(cfg, progress=not args.quiet)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    kind = "2D patch set" if patches else "cube set"
    print(f"{kind} at {summary.out.resolve()}: {counts} {'patches' if patches else 'cubes'} of "
          f"{tuple(cfg.cubes.cube_size)} from {summary.scans} scans"
          + (f" ({summary.resumed} already done)" if summary.resumed else ""))
    print(f"  split: {summary.split_rule}" + (f"; {len(summary.left_out)} patient(s) left out" if summary.left_out else ""))
    for scan, reason in summary.skipped.items():
        print(f"  skipped {scan}: {reason}")
    return 0
