"""``semantic-genesis cubes``: cut a cube set (Models Genesis pretraining data) out of a scans folder.

Examples::

    semantic-genesis cubes --data data/ct --out data/cubes                      # paper defaults, 64x64x32
    semantic-genesis cubes --data data/ct --out data/cubes_tiny --config configs/models_genesis_3d_tiny.yaml
    semantic-genesis cubes --data data/luna16 --out data/cubes cubes.cubes_per_scan=64 cubes.dtype=uint8

For every scan (any layout ``list_scans`` recognises: native phantoms, LUNA16, LiTS, BraTS, or a
folder of volumes) it samples ``cubes.cubes_per_scan`` cubes of ``cubes.cube_size`` voxels that pass
the content test (by default: mostly air inside the body), splits train / validation / test by patient
(LUNA16: by subset, as the official code; ``cubes.split``), and writes memory-mappable shards with a
manifest that records each split's patients. A rerun into the same folder resumes (scans already done are skipped); scans too small for
the cube size are reported and skipped.
"""

from __future__ import annotations

import argparse

from semantic_genesis.commands._common import add_config_arguments, load_command_config

NAME = "cubes"
HELP = "cut random sub-volumes (a cube set) out of scans for Models Genesis pretraining"
ORDER = 20
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", "-d", default=None, help="scans folder (default: config `data`)")
    parser.add_argument("--out", "-o", default=None, help="cube-set folder (default: config `out`); reruns resume")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semantic_genesis.config import replace
    from semantic_genesis.cubes import generate_cubes

    cfg = load_command_config(args)
    changes = {k: v for k, v in (("data", args.data), ("out", args.out)) if v is not None}
    if changes:
        cfg = replace(cfg, **changes)
    summary = generate_cubes(cfg, progress=not args.quiet)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(f"cube set at {summary.out.resolve()}: {counts} cubes of {tuple(cfg.cubes.cube_size)} from {summary.scans} scans"
          + (f" ({summary.resumed} already done)" if summary.resumed else ""))
    print(f"  split: {summary.split_rule}" + (f"; {len(summary.left_out)} patient(s) left out" if summary.left_out else ""))
    for scan, reason in summary.skipped.items():
        print(f"  skipped {scan}: {reason}")
    return 0
