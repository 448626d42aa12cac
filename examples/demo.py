"""The end-to-end demo behind ``make demo``: the whole pipeline on the embedded phantom data.

phantom cohorts -> anatomy figures -> transform gallery -> cube set -> Models Genesis pretraining ->
restorations figure -> self-discovery -> patterns figure -> Semantic Genesis pretraining ->
evaluate scratch vs Models Genesis vs Semantic Genesis on the phantom NCC and NCS tasks ->
``report.md`` with the tables and all figures.

Every stage is a ``semantic-genesis`` command, printed before it runs, so the demo doubles as a tour
of the command line. Rerunning the demo resumes: finished stages are skipped by the commands
themselves. Sizes come from the ``*_tiny`` presets, so it finishes in minutes on 2 CPU cores; its
numbers show that the pipeline works, not how the methods compare on real data.

Reproducible numbers: every stage runs with one CPU thread (``OMP_NUM_THREADS=1`` and friends, as
``make test`` does), so another machine prints the same tables. The README shows them; at the end
the demo compares its tables (3D and 2D, each between its own markers) with the README's and exits
with status 1 and a diff when they differ (``--update-readme`` writes the new tables into the README
instead). The check runs only with the default settings, which are the README's.

Usage::

    python examples/demo.py --out demo_out [--trials 3] [--seed 0] [--parts 3d,2d] [--update-readme]
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# One thread everywhere (torch, BLAS, numba): reductions then add in the same order on every machine.
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
TABLE_BEGIN = "<!-- demo-table:begin"
TABLE_END = "<!-- demo-table:end -->"
TABLE_2D_BEGIN = "<!-- demo-table-2d:begin"
TABLE_2D_END = "<!-- demo-table-2d:end -->"
DEFAULTS = {"seed": 0, "patients": 24, "task_patients": 48, "trials": 3, "parts": "3d,2d"}


class Demo:
    """Runs ``semantic-genesis`` stages in order and records how long each took."""

    def __init__(self, out: Path):
        self.out = out
        self.timings: list[tuple[str, float]] = []

    def run(self, title: str, *args: str) -> None:
        argv = [sys.executable, "-m", "semantic_genesis", *args]
        print(f"\n==> {title}\n    $ semantic-genesis {' '.join(shlex.quote(a) for a in args)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env={**os.environ, **PINNED_THREADS})
        elapsed = time.perf_counter() - start
        self.timings.append((title, elapsed))
        if proc.returncode != 0:
            raise SystemExit(f"demo stage failed: {title} (exit code {proc.returncode})")
        print(f"    [{elapsed:.1f} s]", flush=True)


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def table_lines(markdown: str) -> list[str]:
    """The lines of the first Markdown table in ``markdown`` (header, rule and rows)."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return []
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def readme_table(readme_text: str, markers: tuple[str, str] = (TABLE_BEGIN, TABLE_END)) -> list[str]:
    """The table between the README's demo-table markers (``markers``: the 3D table's by default,
    ``(TABLE_2D_BEGIN, TABLE_2D_END)`` for the 2D one).

    Raises:
        ValueError: the markers are missing.
    """
    begin = readme_text.find(markers[0])
    end = readme_text.find(markers[1])
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no '{markers[0]} ... -->' / '{markers[1]}' block")
    return table_lines(readme_text[begin:end])


def compare_tables(readme_text: str, demo_table: list[str], markers: tuple[str, str] = (TABLE_BEGIN, TABLE_END),
                   source: str = "results/results.md") -> str:
    """A unified diff from the README's table to the demo's (empty when they are the same)."""
    diff = difflib.unified_diff(readme_table(readme_text, markers), demo_table, "README.md (demo table)",
                                f"this run ({source})", lineterm="")
    return "\n".join(diff)


def with_table(readme_text: str, demo_table: list[str], markers: tuple[str, str] = (TABLE_BEGIN, TABLE_END)) -> str:
    """``readme_text`` with the demo table between its markers replaced by ``demo_table``."""
    begin = readme_text.find(markers[0])
    end = readme_text.find(markers[1])
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no '{markers[0]} ... -->' / '{markers[1]}' block")
    head_end = readme_text.index("-->", begin) + len("-->")
    return readme_text[:head_end] + "\n" + "\n".join(demo_table) + "\n" + readme_text[end:]


def embed_markdown(text: str, level: int) -> list[str]:
    """The lines of a Markdown file to nest under a heading of ``level``: its title (a leading ``#``
    heading) is dropped and its other headings are moved below ``level``."""
    lines = text.strip().splitlines()
    if lines and re.match(r"^# ", lines[0]):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    levels = [len(m.group(1)) for m in (re.match(r"^(#+) ", line) for line in lines) if m]
    shift = level + 1 - min(levels) if levels else 0
    return [("#" * shift + line) if re.match(r"^#+ ", line) else line for line in lines]


def write_report(out: Path, demo: Demo, figures: dict[str, Path], tables: dict[str, Path], total: float) -> Path:
    """``report.md``: results tables, figures and stage timings, with paths relative to the report."""
    from semantic_genesis.utils.atomic import write_text

    lines = [
        "# semantic-genesis demo report",
        "",
        "Everything below was produced by `make demo` on the embedded phantom data with the tiny",
        "presets (`semantic-genesis configs` lists them): tiny networks, a few hundred optimiser steps,",
        "synthetic patients.",
        "The numbers show that the pipeline runs end to end; they are not evidence about the methods on",
        "real scans (use the paper presets and real data for that).",
        "",
        "## Results (fine-tuning, mean ± s.d. over trials)",
        "",
    ]
    for title, path in tables.items():
        lines += [f"### {title}", ""]
        lines += embed_markdown(path.read_text(encoding="utf-8"), 3) if path.is_file() else [f"(missing: {path})"]
        lines += [""]
    lines += ["## Figures", ""]
    for title, path in figures.items():
        if path.is_file():
            lines += [f"### {title}", "", f"![{title}]({_rel(path, out)})", ""]
    lines += ["## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {title} | {seconds:.1f} |" for title, seconds in demo.timings]
    lines += [f"| **total** | **{total:.1f}** |", ""]
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pretraining cohort and every run")
    parser.add_argument("--patients", type=int, default=24, help="patients in the pretraining cohort")
    parser.add_argument("--task-patients", type=int, default=48, help="patients in the target-task cohort")
    parser.add_argument("--trials", type=int, default=3, help="fine-tuning trials per initialisation")
    parser.add_argument("--parts", default="3d,2d", help="which parts to run: 3d, 2d or 3d,2d (default)")
    parser.add_argument("--update-readme", action="store_true",
                        help="write this run's transfer tables into README.md instead of failing when they differ")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - {"3d", "2d"}:
        parser.error(f"--parts must name 3d and/or 2d, got {args.parts!r}")

    out = Path(args.out).resolve()
    demo = Demo(out)
    start = time.perf_counter()
    figures: dict[str, Path] = {}
    tables: dict[str, Path] = {}
    if "3d" in parts:
        part_3d(demo, out, args, figures, tables)
    if "2d" in parts:
        part_2d(demo, out, args, figures, tables)
    total = time.perf_counter() - start
    report = write_report(out, demo, figures, tables, total)
    print(f"\nDemo finished in {total / 60:.1f} min. Outputs are in {out}")
    print(f"Report: {report}")
    status = 0
    if "3d" in parts:
        status |= check_readme(out / "results" / "results.md", args)
    if "2d" in parts:
        status |= check_readme(out / "results_2d" / "results.md", args, (TABLE_2D_BEGIN, TABLE_2D_END))
    return status


def part_3d(demo: Demo, out: Path, args: argparse.Namespace, figures: dict[str, Path], tables: dict[str, Path]) -> None:
    """CT: Models Genesis 3D and Semantic Genesis 3D against scratch on phantom NCC and NCS."""
    data, runs, figs, evals = out / "data", out / "runs", out / "figures", out / "evaluate"
    seed, task_seed = str(args.seed), str(args.seed + 1000)

    # 1. Data: a pretraining cohort and, from other patients, the target-task data in public layouts.
    demo.run("pretraining cohort (native layout)", "phantom", "ct", "--patients", str(args.patients), "--seed", seed, "--out", str(data / "ct"), "-q")
    demo.run("target-task cohort, LUNA16 layout (NCC)", "phantom", "ct", "--patients", str(args.task_patients), "--seed", task_seed, "--out", str(data / "luna16"), "--layout", "luna16", "-q")
    demo.run("target-task cohort, native layout with nodule masks (NCS)", "phantom", "ct", "--patients", str(args.task_patients), "--seed", task_seed, "--out", str(data / "nodules"), "-q")
    demo.run("radiographs projected from phantom CT (ChestX-ray14 layout)", "phantom", "xray", "--patients", "4", "--seed", seed, "--out", str(data / "xray"), "--layout", "chestxray14", "-q")

    # 2. Look at the data and at the transformations.
    demo.run("anatomy: three views of a phantom patient", "inspect", str(data / "ct" / "images" / "phantom_ct_000.nii.gz"), "--png", str(figs / "anatomy_ct.png"))
    first_xray = sorted((data / "xray" / "images").glob("*.png"))[0]
    demo.run("anatomy: a phantom radiograph", "inspect", str(first_xray), "--png", str(figs / "anatomy_xray.png"))
    demo.run("transform gallery", "report", "transforms", "--data", str(data / "ct"), "--out", str(figs), "--count", "3", "--seed", seed)

    # 3. Models Genesis: cube set, pretraining, restorations.
    mg_cfg = "models_genesis_3d_tiny"  # a shipped preset (semantic-genesis configs)
    demo.run("cube set", "cubes", "--config", mg_cfg, "--data", str(data / "ct"), "--out", str(data / "cubes"), "-q", f"seed={seed}")
    demo.run("Models Genesis pretraining (tiny)", "pretrain", "--config", mg_cfg, f"data={data / 'cubes'}", f"out={runs / 'models_genesis'}", f"seed={seed}", "train.progress=false")
    demo.run("restorations figure", "report", "restorations", str(runs / "models_genesis"), "--out", str(figs))

    # 4. Semantic Genesis: self-discovery, patterns figure, pretraining.
    sg_cfg = "semantic_genesis_3d_tiny"
    demo.run("self-discovery (autoencoder, neighbours, coordinates, pattern set)", "discover", "--config", sg_cfg, f"data={data / 'ct'}", f"out={runs / 'discovery'}", f"seed={seed}")
    demo.run("patterns figure", "report", "patterns", str(runs / "discovery"), "--out", str(figs))
    demo.run("Semantic Genesis pretraining (tiny)", "pretrain", "--config", sg_cfg, f"patterns={runs / 'discovery' / 'patterns'}", f"out={runs / 'semantic_genesis'}", f"seed={seed}", "train.progress=false")
    demo.run("training curves of both pretraining runs", "report", "curves", str(runs / "models_genesis"), str(runs / "semantic_genesis"), "--out", str(figs))

    # 5. Transfer: scratch vs Models Genesis vs Semantic Genesis, several trials, t-tests.
    inits = ",".join(
        [
            "scratch",
            f"models_genesis={runs / 'models_genesis' / 'weights' / 'best.safetensors'}",
            f"semantic_genesis={runs / 'semantic_genesis' / 'weights' / 'best.safetensors'}",
        ]
    )
    # 16x16x8 crops at the phantoms' 2.8 mm = the field of view of the paper's 64x64x32 crops at ~0.7 mm.
    tasks = (
        ("ncc", data / "luna16", "finetune_tiny"),
        ("ncs", data / "nodules", "finetune_tiny_ncs"),
    )
    for task, task_data, ft_cfg in tasks:
        demo.run(
            f"evaluate {task.upper()}: {args.trials} trials per initialisation",
            "evaluate", "--config", str(ft_cfg), "--task", task, "--data", str(task_data), "--inits", inits,
            "--trials", str(args.trials), "--out", str(evals / task), f"seed={seed}", "model.width=0.125",
        )
    demo.run("results table (Table-2 shape)", "report", "results", str(evals / "ncc"), str(evals / "ncs"), "--out", str(out / "results"))

    figures.update({
        "Phantom chest CT (three orthogonal mid-slices)": figs / "anatomy_ct.png",
        "Phantom radiograph": figs / "anatomy_xray.png",
        "Self-restoration transformations": figs / "transforms.png",
        "Models Genesis restorations (input / output / target)": figs / "restorations.png",
        "Self-discovered patterns (one class per row: the same coordinate across neighbour patients)": figs / "patterns_grid.png",
        "The reference patient with its pattern coordinates": figs / "patterns_reference.png",
        "Pretraining curves (Models Genesis and Semantic Genesis)": figs / "curves.png",
        "NCC results": evals / "ncc" / "results.png",
        "NCS results": evals / "ncs" / "results.png",
    })
    tables.update({
        "All 3D tasks": out / "results" / "results.md",
        "NCC (nodule false-positive reduction, AUC)": evals / "ncc" / "results.md",
        "NCS (nodule segmentation, IoU)": evals / "ncs" / "results.md",
    })


def part_2d(demo: Demo, out: Path, args: argparse.Namespace, figures: dict[str, Path], tables: dict[str, Path]) -> None:
    """Radiographs: Models Genesis 2D and Semantic Genesis 2D against scratch on phantom DXC and PXS."""
    data, runs, figs, evals = out / "data", out / "runs_2d", out / "figures_2d", out / "evaluate_2d"
    seed, task_seed = str(args.seed), str(args.seed + 1000)
    demo.run("2D pretraining cohort: phantom radiographs (native layout)", "phantom", "xray", "--patients", str(args.patients), "--seed", seed, "--out", str(data / "xray_pretrain"), "-q")
    demo.run("2D target-task cohort, ChestX-ray14 layout (DXC)", "phantom", "xray", "--patients", str(args.task_patients), "--seed", task_seed, "--out", str(data / "cxr14"), "--layout", "chestxray14", "-q")
    demo.run("2D target-task cohort, SIIM-ACR layout (PXS)", "phantom", "xray", "--patients", str(args.task_patients), "--seed", task_seed, "--out", str(data / "siim"), "--layout", "siim", "-q")

    mg_cfg = "models_genesis_2d_tiny"
    demo.run("2D patch set", "cubes", "--config", mg_cfg, "--data", str(data / "xray_pretrain"), "--out", str(data / "patches_2d"), "-q", f"seed={seed}")
    demo.run("Models Genesis 2D pretraining (tiny)", "pretrain", "--config", mg_cfg, f"data={data / 'patches_2d'}", f"out={runs / 'models_genesis_2d'}", f"seed={seed}", "train.progress=false")

    sg_cfg = "semantic_genesis_2d_tiny"
    demo.run("2D self-discovery (autoencoder on whole radiographs, neighbours, coordinates, pattern set)", "discover", "--config", sg_cfg, f"data={data / 'xray_pretrain'}", f"out={runs / 'discovery_2d'}", f"seed={seed}")
    demo.run("2D patterns figure", "report", "patterns", str(runs / "discovery_2d"), "--out", str(figs))
    demo.run("Semantic Genesis 2D pretraining (tiny)", "pretrain", "--config", sg_cfg, f"patterns={runs / 'discovery_2d' / 'patterns'}", f"out={runs / 'semantic_genesis_2d'}", f"seed={seed}", "train.progress=false")

    inits = ",".join([
        "scratch",
        f"models_genesis_2d={runs / 'models_genesis_2d' / 'weights' / 'best.safetensors'}",
        f"semantic_genesis_2d={runs / 'semantic_genesis_2d' / 'weights' / 'best.safetensors'}",
    ])
    for task, task_data, ft_cfg in (("dxc", data / "cxr14", "finetune_dxc_tiny"), ("pxs", data / "siim", "finetune_pxs_tiny")):
        demo.run(
            f"evaluate {task.upper()}: {args.trials} trials per initialisation",
            "evaluate", "--config", ft_cfg, "--task", task, "--data", str(task_data), "--inits", inits,
            "--trials", str(args.trials), "--out", str(evals / task), f"seed={seed}",
        )
    demo.run("2D results table", "report", "results", str(evals / "dxc"), str(evals / "pxs"), "--out", str(out / "results_2d"))
    figures.update({
        "2D self-discovered patterns (one class per row: the same coordinate across neighbour radiographs)": figs / "patterns_grid.png",
        "The reference radiograph with its pattern coordinates": figs / "patterns_reference.png",
        "DXC results": evals / "dxc" / "results.png",
        "PXS results": evals / "pxs" / "results.png",
    })
    tables.update({
        "All 2D tasks": out / "results_2d" / "results.md",
        "DXC (14-label chest X-ray classification, mean AUC)": evals / "dxc" / "results.md",
        "PXS (pneumothorax segmentation, IoU)": evals / "pxs" / "results.md",
    })


def check_readme(results_md: Path, args: argparse.Namespace, markers: tuple[str, str] = (TABLE_BEGIN, TABLE_END)) -> int:
    """Compare a transfer table with the README's between ``markers`` (or write it there with
    ``--update-readme``)."""
    table = table_lines(results_md.read_text(encoding="utf-8"))
    print(f"\nTransfer table of this run ({results_md.parent.name}):\n" + "\n".join(table))
    settings = {"seed": args.seed, "patients": args.patients, "task_patients": args.task_patients, "trials": args.trials,
                "parts": getattr(args, "parts", DEFAULTS["parts"])}
    if settings != DEFAULTS:
        print(f"README check skipped: the README's tables are for the default settings {DEFAULTS}")
        return 0
    readme = README.read_text(encoding="utf-8")
    if args.update_readme:
        from semantic_genesis.utils.atomic import write_text

        write_text(README, with_table(readme, table, markers))
        print(f"wrote the table into {README}")
        return 0
    diff = compare_tables(readme, table, markers, _rel(results_md, results_md.parents[1]))
    if diff:
        print(f"\nERROR: the transfer table differs from the one in {README}:\n{diff}\n"
              "If the change is intended (new defaults, new code), run 'python examples/demo.py --update-readme' "
              "(or 'make demo-readme') and commit the README.", file=sys.stderr)
        return 1
    print(f"The table matches {README}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
