"""``semantic-genesis phantom ct|mri|xray``: generate the embedded phantom cohorts and export them.

Examples::

    semantic-genesis phantom ct --patients 24 --seed 0 --out data/ct                      # native layout
    semantic-genesis phantom ct --patients 10 --out data/luna16 --layout luna16 --shape 96 96 64
    semantic-genesis phantom ct --patients 20 --out data/luna16_full --layout luna16 --shape 512 512 140 --spacing 0.7 0.7 2.5
    semantic-genesis phantom ct --patients 4 --out data/lits --layout lits
    semantic-genesis phantom mri --patients 4 --out data/brats --layout brats
    semantic-genesis phantom xray --patients 20 --out data/cxr14 --layout chestxray14
    semantic-genesis phantom xray --patients 20 --out data/siim --layout siim
    semantic-genesis phantom xray --patients 200 --out data/vindr --layout vindr_cxr   # also chexpert,
        # mimic_cxr, rsna_pneumonia, shenzhen: each layout with its own label space

A rerun into the same folder with the same seed and shape resumes (patients already written are
skipped); a larger ``--patients`` extends the cohort. The CT anatomy is defined in millimetres, so
``--shape`` with ``--spacing`` gives any grid with the same physical anatomy (LUNA16's typical grid is
512 x 512 x ~140 at 0.7 x 0.7 x 2.5 mm; without ``--spacing`` a shape keeps the default 358 x 358 x
307 mm field of view).
"""

from __future__ import annotations

import argparse

NAME = "phantom"
HELP = "generate phantom cohorts (chest CT, brain MRI, radiographs) in native or public-dataset layouts"
ORDER = 10
DESCRIPTION = __doc__

_KINDS = {
    "ct": ("chest CT phantoms", ("native", "luna16", "lits")),
    "mri": ("brain MRI phantoms (FLAIR, T1, T1ce, T2, tumour labels)", ("native", "brats")),
    "xray": (
        "chest radiographs projected from the CT phantoms",
        ("native", "chestxray14", "siim", "chexpert", "mimic_cxr", "vindr_cxr", "rsna_pneumonia", "shenzhen"),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, (help_text, layouts) in _KINDS.items():
        p = sub.add_parser(kind, help=help_text, description=help_text)
        p.add_argument("--patients", "-n", type=int, default=8, help="number of patients (default 8)")
        p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
        p.add_argument("--out", "-o", required=True, help="output folder (created; reruns resume)")
        p.add_argument("--layout", choices=layouts, default="native", help="on-disk layout (default native)")
        p.add_argument(
            "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
            help="voxel grid of each volume (default: the generator's)"
            + ("; for xray, the grid of the projected CT" if kind == "xray" else ""),
        )
        if kind == "ct":
            p.add_argument("--spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"), default=None,
                           help="voxel size in mm (default: the one that keeps a 358 x 358 x 307 mm field of view)")
        if kind == "xray":
            p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                           help="radiograph size in pixels (default: the generator's)")
        p.add_argument("--dry-run", action="store_true", help="check the arguments and the output folder, write nothing")


def run(args: argparse.Namespace) -> int:
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.phantoms import export

    if args.patients < 1:
        raise ConfigError(f"--patients must be at least 1, got {args.patients}")
    if args.shape is not None and min(args.shape) < 16:
        raise ConfigError(f"--shape must be at least 16 voxels along each axis, got {' '.join(map(str, args.shape))}")
    from semantic_genesis.commands._common import check_output_folder, describe_output, dry_run_report

    state = check_output_folder(args.out)
    if args.dry_run:
        return dry_run_report("phantom", [
            describe_output(args.out, state, "patients already written are skipped"),
            f"would write {args.patients} {args.kind} patient(s) (seed {args.seed}) in the {args.layout} layout",
        ])
    exporter = {
        "ct": export.export_ct_cohort,
        "mri": export.export_mri_cohort,
        "xray": export.export_xray_cohort,
    }[args.kind]
    extra = {"size": tuple(args.size)} if getattr(args, "size", None) else {}
    if getattr(args, "spacing", None) is not None:
        if min(args.spacing) <= 0:
            raise ConfigError(f"--spacing must be three positive mm values, got {' '.join(map(str, args.spacing))}")
        extra["spacing"] = tuple(args.spacing)
    result = exporter(
        args.out,
        args.patients,
        seed=args.seed,
        layout=args.layout,
        shape=tuple(args.shape) if args.shape else None,
        progress=not args.quiet,
        **extra,
    )
    resumed = result.patients - result.written
    print(
        f"{args.kind} cohort: {result.patients} patients in {args.layout} layout at {result.root.resolve()}"
        + (f" ({resumed} already there, {result.written} written)" if resumed else "")
    )
    for path in result.files:
        print(f"  {path.resolve()}")
    return 0
