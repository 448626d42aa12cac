"""Transfer benchmark that can tell the methods apart: label efficiency, linear probes, pretraining budget.

The question: does a pretraining method learn something that transfers, at which pretraining budget
and with how many labels? Every stage is a ``semantic-genesis`` command, printed before it runs and
listed in the report, so any number in the report is reproduced by running its commands:

1. **data** (``phantom ct``): a pretraining cohort and, from other patients, the target-task cohort
   in the LUNA16 layout (NCC) and the native layout with nodule masks (NCS); or existing folders
   (``data.paths`` in the preset, e.g. real LUNA16);
2. **pretraining** of every method (``cubes`` + ``pretrain`` for cube methods; ``discover`` +
   ``pretrain`` for methods on discovered patterns), one run per method extended budget by budget
   (``train.max_steps`` grows and the run resumes; the preset uses an epoch-based learning-rate
   schedule, so a snapshot is the same run stopped earlier); the weights of every budget are kept;
   the curves are drawn by ``report curves``;
2b. **positive control** (``positive_control: true``): a network fine-tuned on the *pretraining*
   cohort's own labels (``finetune`` on its nodules; other patients than the task's), i.e. a
   representation known to transfer. If it does not beat scratch, the protocol cannot tell methods
   apart at this size and a null result for the self-supervised methods means nothing;
3. **label efficiency and linear probes** (``evaluate --label-fractions ... --mode
   finetune,linear_probe``): scratch and every method's final weights, ``trials`` trials each, at
   every fraction of the training patients (nested, the same for every initialisation, the same
   test set), on every task;
4. **pretraining budget** (``evaluate --label-fractions F``): every method's weights after each budget
   at one label fraction (0 steps = scratch);
5. **report** (``OUT/report.md``): ``report results`` tables (one per fraction, fine-tuning and
   linear probe side by side, Student's t-test against the best unless ``--ttest welch``, the test
   set's patients and positives under every table), label-efficiency curves, the budget table and
   curve, the pretraining curves, the machine, the time of every stage and every command.

Rerunning the same command resumes every stage (finished data, snapshots and trials are kept).
The stages are jobs with dependencies, run ``lanes`` at a time (the CPU preset: 2 lanes of one
thread; the GPU preset: 1), each as soon as its inputs exist, the job with the longest chain of
estimated work behind it first; ``OUT/report.md`` lists when each started and how long it took.

Usage::

    make bench-transfer                                     # CPU preset (2 cores: measured 60 minutes)
    python benchmarks/transfer_bench.py --preset cpu --out bench/transfer
    python benchmarks/transfer_bench.py --preset cpu --all-methods     # every Table-2 / Fig.-2 method
    python benchmarks/transfer_bench.py --preset gpu --data pretrain=LUNA16 ncc=LUNA16 ncs=NCS_DATA
    # about 7 minutes, to check the pipeline end to end (docs/transfer_findings.md):
    python benchmarks/transfer_bench.py --preset cpu --out /tmp/tb --threads 1 --budgets 40,80 \\
        --fractions 0.5,1 --budget-fraction 0.5 --trials 2 --set data.pretrain_patients=8 \\
        data.task_patients=20 'finetune.tasks.ncc.overrides=[train.epochs=4]' \\
        'finetune.tasks.ncs.overrides=[train.epochs=3]' 'pretrain.cubes_overrides=[cubes.cubes_per_scan=16]'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"cpu": ROOT / "benchmarks" / "transfer_bench_cpu.yaml", "gpu": ROOT / "benchmarks" / "transfer_bench_gpu.yaml"}
# Methods pretrained on the discovered patterns of ``discover`` (the others on the cube set of ``cubes``).
PATTERN_METHODS = ("semantic_genesis", "self_classification", "self_restoration_patterns",
                   "semantic_inpainting", "semantic_patch_shuffling", "semantic_models_genesis")
# --all-methods: the rows of Semantic Genesis (Haghighi et al., MICCAI 2020) Table 2 that this
# library implements, and the Fig. 2 pairs (each restoration method with the semantics add-on);
# semantic_models_genesis is semantic_genesis itself, so it is not repeated.
CONTROL = "supervised_control"  # the positive control's initialisation name in the tables
ALL_METHODS = ("models_genesis", "semantic_genesis", "autoencoder", "inpainting", "patch_shuffling", "rubiks_cube",
               "self_classification", "self_restoration_patterns", "semantic_inpainting", "semantic_patch_shuffling")


class Bench:
    """The benchmark's state: preset, output folder, the commands it ran and how long each job took."""

    def __init__(self, preset: dict, out: Path, threads: int, lanes: int = 1):
        self.preset = preset
        self.out = out
        self.lanes = max(1, lanes)
        self.started = time.perf_counter()
        self.timings: list[tuple[str, float, float]] = []  # (job, start in s since the benchmark began, seconds)
        self.commands: list[str] = []
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "OPENBLAS_NUM_THREADS": str(threads)}

    def sh(self, *args: Any) -> None:
        """Run one ``semantic-genesis`` command (printed and recorded), stopping the benchmark if it fails."""
        line = "semantic-genesis " + " ".join(shlex.quote(str(a)) for a in args)
        self.commands.append(line)
        print(f"$ {line}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "semantic_genesis", *map(str, args)], cwd=ROOT, env=self.env)
        if proc.returncode:
            raise SystemExit(f"transfer_bench: `{line}` failed (exit {proc.returncode}); rerun to resume")

    def run(self, jobs: list["Job"]) -> None:
        """Run ``jobs`` on ``self.lanes`` lanes (one command per lane at a time), each once its
        dependencies are done, the job with the longest chain of estimated work behind it first (so the
        critical path, e.g. the longest pretraining, starts early). After a failure no new job starts;
        the running ones finish and the first failure is raised."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        by_name = {job.name: job for job in jobs}
        for job in jobs:
            missing = [d for d in job.deps if d not in by_name]
            if missing:
                raise ValueError(f"job {job.name!r} depends on unknown jobs {missing}")
        rank = _upward_rank(jobs)
        done: set[str] = set()
        running: dict = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.lanes) as pool:
            while True:
                if failure is None:
                    ready = sorted((j for j in jobs if j.name not in done and j.name not in running.values()
                                    and all(d in done for d in j.deps)), key=lambda j: -rank[j.name])
                    for job in ready[: self.lanes - len(running)]:
                        running[pool.submit(self._timed, job)] = job.name
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    if future.exception() is not None and failure is None:
                        failure = future.exception()
                    done.add(name)
        if failure is not None:
            raise failure
        left = [j.name for j in jobs if j.name not in done]
        if left:
            raise ValueError(f"jobs never became ready (a dependency cycle?): {left}")

    def _timed(self, job: "Job") -> None:
        start = time.perf_counter()
        print(f"\n==> {job.name}", flush=True)
        job.fn()
        seconds = time.perf_counter() - start
        self.timings.append((job.name, start - self.started, seconds))
        print(f"    [{job.name}: {seconds:.0f} s]", flush=True)


class Job:
    """One step of the benchmark: ``fn`` runs its commands; it starts after the jobs named in ``deps``.

    ``cost`` is a rough estimate of its run time (any unit), used only to order ready jobs."""

    def __init__(self, name: str, fn, deps: tuple[str, ...] | list[str] = (), cost: float = 1.0):
        self.name, self.fn, self.deps, self.cost = name, fn, tuple(deps), float(cost)


def _upward_rank(jobs: list[Job]) -> dict[str, float]:
    """Each job's cost plus the largest rank among the jobs that wait for it (its critical path)."""
    dependents: dict[str, list[Job]] = {j.name: [] for j in jobs}
    for job in jobs:
        for d in job.deps:
            dependents[d].append(job)
    rank: dict[str, float] = {}

    def visit(job: Job, trail: tuple[str, ...] = ()) -> float:
        if job.name in trail:
            raise ValueError(f"dependency cycle through {job.name!r}")
        if job.name not in rank:
            rank[job.name] = job.cost + max((visit(d, trail + (job.name,)) for d in dependents[job.name]), default=0.0)
        return rank[job.name]

    for job in jobs:
        visit(job)
    return rank


# ------------------------------------------------------------------------------------------------
# preset
# ------------------------------------------------------------------------------------------------
def load_preset(name_or_path: str, settings: list[str]) -> dict:
    """The preset (``cpu``, ``gpu`` or a YAML path) with ``KEY=VALUE`` settings applied (dotted keys, YAML values)."""
    import yaml

    path = PRESETS.get(name_or_path, Path(name_or_path))
    if not path.is_file():
        raise SystemExit(f"transfer_bench: preset {name_or_path}: not found (cpu, gpu or a YAML file)")
    preset = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(preset, dict):
        raise SystemExit(f"transfer_bench: {path}: expected a mapping")
    for text in settings:
        key, sep, value = text.partition("=")
        if not sep:
            raise SystemExit(f"transfer_bench: --set {text}: expected KEY=VALUE")
        node = preset
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    preset["_path"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return preset


# ------------------------------------------------------------------------------------------------
# 1. data
# ------------------------------------------------------------------------------------------------
def data_jobs(bench: Bench, overrides: dict[str, str]) -> tuple[dict[str, Path], list[Job]]:
    """Folders of the pretraining cohort and of each task, and the jobs that make the missing ones
    (phantoms, one ``phantom ct`` per folder; ``data.paths`` / ``--data`` folders are used as given)."""
    d = bench.preset["data"]
    given = {**(d.get("paths") or {}), **overrides}
    paths = {key: Path(value).expanduser().resolve() for key, value in given.items()}
    shape = ["--shape", *map(str, d["shape"])] if d.get("shape") else []
    layouts = {"pretrain": ("native", d.get("pretrain_patients"), d.get("pretrain_seed", 0)),
               "ncc": ("luna16", d.get("task_patients"), d.get("task_seed", 1000)),
               "ncs": ("native", d.get("task_patients"), d.get("task_seed", 1000))}
    if bench.preset.get("positive_control"):
        layouts["control_ncc"] = ("luna16", d.get("pretrain_patients"), d.get("pretrain_seed", 0))
        layouts["control_ncs"] = layouts["pretrain"]
    jobs: list[Job] = []
    for key, (layout, patients, seed) in layouts.items():
        if key in paths:
            continue
        if not patients:
            raise SystemExit(f"transfer_bench: no data for {key}: give --data {key}=DIR or data.paths.{key} in the preset")
        if key == "control_ncs" and "pretrain" not in given:
            paths[key] = paths.get("pretrain", bench.out / "data" / "pretrain")  # the native pretraining cohort has the nodule masks
            continue
        folder = paths[key] = bench.out / "data" / key

        def make(folder=folder, layout=layout, patients=patients, seed=seed) -> None:
            if not (folder / ".bench_done").is_file():
                bench.sh("phantom", "ct", "--patients", patients, "--seed", seed, "--layout", layout, "--out", folder,
                         "-q", *shape)
                (folder / ".bench_done").write_text("ok\n")

        jobs.append(Job(data_job(key), make, cost=patients))
    return paths, jobs


def data_job(key: str) -> str:
    return f"data {key}"


# ------------------------------------------------------------------------------------------------
# 2. pretraining
# ------------------------------------------------------------------------------------------------
def method_config(configs: dict, method: str, family: str) -> str:
    """The pretraining preset of ``method``: ``configs[method]``, else the library preset named by
    ``configs["method"]`` (e.g. ``{method}_3d_tiny``: each method's own recipe) when it exists, else
    the family's (``configs["cube"]`` / ``configs["pattern"]``)."""
    from semantic_genesis.config import preset_path

    if configs.get(method):
        return configs[method]
    own = configs.get("method", "").format(method=method)
    return own if own and preset_path(own) is not None else configs[family]


def pretrain_jobs(bench: Bench, method: str, budgets: list[int]) -> tuple[dict[int, Path], list[Job]]:
    """``{budget: weights file}`` of ``method`` and the jobs that make them: its input set (the cube set
    or the discovered patterns, shared by its family, ``input_job``) and one job per budget, each
    extending the same run (``train.max_steps`` grows and the run resumes)."""
    p = bench.preset["pretrain"]
    pattern = method in PATTERN_METHODS
    family = "pattern" if pattern else "cube"
    config = method_config(p["configs"], method, family)
    run = bench.out / "pretrain" / method
    common = ["--config", config, f"method.name={method}", "train.progress=false", f"seed={p.get('seed', 0)}",
              *p.get("overrides", {}).get(family, []), *p.get("overrides", {}).get(method, [])]
    common.append(f"patterns={bench.out / 'pretrain' / 'discovery' / 'patterns'}" if pattern
                  else f"data={bench.out / 'pretrain' / 'cubes'}")
    step_cost = 0.5 if pattern else 1.0  # relative cost of a step, only to order ready jobs
    snapshots: dict[int, Path] = {}
    jobs: list[Job] = []
    previous, done_steps = input_job(family), 0
    for budget in budgets:
        target = snapshots[budget] = run / "snapshots" / f"step_{budget}.safetensors"

        def extend(budget=budget, target=target) -> None:
            if not target.is_file():
                bench.sh("pretrain", *common, f"out={run}", f"train.max_steps={budget}")
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy(run / "weights" / "final.safetensors", target)
                bench.commands.append(f"cp {run / 'weights' / 'final.safetensors'} {target}")

        name = pretrain_job(method, budget)
        jobs.append(Job(name, extend, deps=[previous], cost=step_cost * (budget - done_steps)))
        previous, done_steps = name, budget
    return snapshots, jobs


def input_jobs(bench: Bench, families: set[str], data: dict[str, Path], data_deps: list[str]) -> list[Job]:
    """The jobs that make the shared pretraining inputs: the cube set (``cubes``) and the discovered
    pattern set (``discover``), for the families in ``families``."""
    p = bench.preset["pretrain"]
    cubes, discovery = bench.out / "pretrain" / "cubes", bench.out / "pretrain" / "discovery"

    def make_cubes() -> None:
        if not (cubes / "manifest.json").is_file():
            bench.sh("cubes", "--config", p["configs"]["cubes"], "--data", data["pretrain"], "--out", cubes, "-q",
                     *p.get("cubes_overrides", []))

    def make_patterns() -> None:
        if not (discovery / "patterns" / "manifest.json").is_file():
            bench.sh("discover", "--config", p["configs"]["discovery"], f"data={data['pretrain']}", f"out={discovery}",
                     "discovery.progress=false", *p.get("discovery_overrides", []))

    makers = {"cube": make_cubes, "pattern": make_patterns}
    return [Job(input_job(f), makers[f], deps=data_deps, cost=60) for f in sorted(families)]


def input_job(family: str) -> str:
    return {"cube": "cube set", "pattern": "pattern discovery"}[family]


def pretrain_job(method: str, budget: int) -> str:
    return f"pretrain {method} to {budget} steps"


def _copy(src: Path, dst: Path) -> None:
    from semantic_genesis.utils.atomic import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(src.read_bytes())


def positive_control(bench: Bench, task: str, data: dict[str, Path]) -> Path:
    """Weights of a network fine-tuned on the pretraining cohort's labels of ``task`` (supervised pretraining)."""
    spec = bench.preset["finetune"]["tasks"][task]
    run = bench.out / "control" / task
    weights = run / "weights" / "best.safetensors"
    if not weights.is_file():
        bench.sh("finetune", "--config", spec["config"], "--task", task, "--init", "scratch", "--data",
                 data[f"control_{task}"], "--out", run, "-q", *spec.get("overrides", []))
    return weights


# ------------------------------------------------------------------------------------------------
# 3-4. evaluation
# ------------------------------------------------------------------------------------------------
def _inits(entries: dict[str, Path | None]) -> str:
    return ",".join(name if path is None else f"{name}={path}" for name, path in entries.items())


def evaluate(bench: Bench, task: str, data: Path, folder: Path, inits: dict[str, Path | None],
             fractions: list[float], modes: list[str], ttest: str) -> None:
    f = bench.preset["finetune"]
    spec = f["tasks"][task]
    bench.sh("evaluate", "--config", spec["config"], "--task", task, "--data", data, "--inits", _inits(inits),
             "--trials", f["trials"], "--label-fractions", ",".join(f"{x:g}" for x in fractions), "--mode", ",".join(modes),
             "--ttest", ttest, "--out", folder, "-q", *spec.get("overrides", []))


def budget_name(method: str, budget: int) -> str:
    return f"{method}_{budget}"


# ------------------------------------------------------------------------------------------------
# 5. report
# ------------------------------------------------------------------------------------------------
def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def _cell(values: list) -> str:
    from semantic_genesis.finetune.stats import summarize

    s = summarize([math.nan if v is None else v for v in values])
    if s.n == 0:
        return "n/a"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f}" if math.isfinite(s.std) else f"{100 * s.mean:.2f}"


def budget_values(sweep: Path, budget_folder: Path, methods: list[str], budgets: list[int],
                  fraction: float) -> tuple[str, dict[str, dict[int, list[float]]]]:
    """``(metric, {method: {steps: trial values}})``: 0 steps = scratch, the largest = the label sweep's final weights."""
    from semantic_genesis.finetune.protocol import setting_dir

    final = _results(setting_dir(sweep, "finetune", fraction) if (sweep / "sweep.json").is_file() else sweep)
    partial = _results(budget_folder) if (budget_folder / "results.json").is_file() else {"inits": {}}
    values: dict[str, dict[int, list[float]]] = {}
    for m in methods:
        per = {0: final["inits"].get("scratch", {}).get("values", [])}
        for b in budgets[:-1]:
            per[b] = partial["inits"].get(budget_name(m, b), {}).get("values", [])
        per[budgets[-1]] = final["inits"].get(m, {}).get("values", [])
        values[m] = per
    return final["metric"], values


def budget_table(task: str, metric: str, values: dict[str, dict[int, list[float]]], fraction: float) -> str:
    steps = sorted({b for per in values.values() for b in per})
    lines = [f"| {task.upper()} {metric.upper()} % at label fraction {fraction:g} | "
             + " | ".join(f"{b} steps" for b in steps) + " |", "|---|" + "---|" * len(steps)]
    for m, per in values.items():
        lines.append(f"| {m} | " + " | ".join(_cell(per.get(b, [])) for b in steps) + " |")
    return "\n".join(lines)


def plot_budgets(panels: dict[str, tuple[str, dict[str, dict[int, list[float]]]]], path: Path) -> None:
    """Metric (mean ± s.d.) against pretraining steps, one panel per task, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (task, (metric, values)) in zip(axes[0], panels.items()):
        for k, (m, per) in enumerate(values.items()):
            pts = [(b, [v for v in vs if v is not None]) for b, vs in sorted(per.items()) if any(v is not None for v in vs)]
            if not pts:
                continue
            xs = [b for b, _ in pts]
            means = [100 * sum(v) / len(v) for _, v in pts]
            sds = [100 * _sd(v) for _, v in pts]
            ax.errorbar(xs, means, yerr=sds, marker="o", ms=4, capsize=3, color=f"C{k}", label=m)
        ax.set_xlabel("pretraining steps (0 = scratch)")
        ax.set_ylabel(f"test {metric.upper()} (%)")
        ax.set_title(f"{task.upper()}: fine-tuning vs pretraining budget", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def write_report(bench: Bench, methods: list[str], tasks: list[str], budget_panels: dict, fraction: float,
                 total: float, threads: int, lanes: int = 1) -> Path:
    from semantic_genesis.utils.atomic import write_text

    out = bench.out
    f = bench.preset["finetune"]
    results_md = (out / "report" / "results.md").read_text(encoding="utf-8")
    lines = ["# Transfer benchmark", "",
             f"Preset `{bench.preset['_path']}`; methods {', '.join(methods)} + scratch; tasks {', '.join(tasks)}; "
             f"{f['trials']} trials per initialisation and setting."
             + (f" `{CONTROL}`: positive control, a network fine-tuned on the pretraining cohort's own labels "
                "of the task (supervised pretraining on other patients)." if bench.preset.get("positive_control") else ""),
             f"Machine: {platform.platform()}, {os.cpu_count()} CPUs visible, {threads} thread(s) per command, "
             f"{lanes} command(s) at a time; "
             f"total {total / 60:.1f} min (this invocation; stages finished by an earlier one are skipped).", "",
             "## Pretraining curves (`report curves`)", "", "![pretraining curves](report/curves.png)", "",
             "## Label efficiency and linear probes (`report results`)", "",
             results_md.replace("](label_efficiency.png)", "](report/label_efficiency.png)").replace(
                 "# Transfer results (Semantic Genesis Table 2 layout)\n\n", "", 1), "",
             "## Pretraining budget", "",
             f"Fine-tuning at label fraction {fraction:g} from each method's weights after each number of steps "
             "(0 = scratch; the last budget's runs are those of the label-efficiency sweep). Mean ± s.d. (%).", "",
             "![budget](report/budget.png)", ""]
    for task, (metric, values) in budget_panels.items():
        lines += [budget_table(task, metric, values, fraction), ""]
    lines += ["## Jobs", "", f"Wall-clock; with {lanes} lane(s) jobs overlap, so the total is not their sum.", "",
              "| job | started at (min) | seconds |", "|---|---|---|"]
    lines += [f"| {t} | {start / 60:.1f} | {s:.0f} |" for t, start, s in sorted(bench.timings, key=lambda x: x[1])]
    lines += [f"| **total** | | **{total:.0f}** |", ""]
    lines += ["## Commands", "", "```", *bench.commands, "```", ""]
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    return report


def _csv(text: str | None, cast=str) -> list:
    return [] if text is None else [cast(x.strip()) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", help="cpu (default), gpu, or a YAML file")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the preset's out)")
    ap.add_argument("--methods", default=None, help="comma-separated pretraining methods (default: the preset's)")
    ap.add_argument("--all-methods", action="store_true", help="every Table-2 / Fig.-2 method this library implements")
    for name in ALL_METHODS:
        ap.add_argument(f"--{name.replace('_', '-')}", action="append_const", dest="extra", const=name,
                        help=f"also pretrain and evaluate {name}")
    ap.add_argument("--budgets", default=None, help="comma-separated pretraining steps (default: the preset's)")
    ap.add_argument("--fractions", default=None, help="comma-separated label fractions (default: the preset's)")
    ap.add_argument("--budget-fraction", type=float, default=None, help="label fraction of the budget sweep")
    ap.add_argument("--trials", type=int, default=None, help="trials per initialisation and setting")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: the preset's)")
    ap.add_argument("--modes", default=None, help="finetune,linear_probe (default: the preset's)")
    ap.add_argument("--ttest", choices=("student", "welch"), default="student")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per command (default: the preset's)")
    ap.add_argument("--lanes", type=int, default=None,
                    help="commands run at the same time when their inputs are ready (default: the preset's lanes)")
    ap.add_argument("--data", nargs="*", default=[], metavar="KEY=DIR", help="existing data: pretrain=, ncc=, ncs=")
    ap.add_argument("--no-positive-control", action="store_true", help="skip the supervised positive control")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="preset entries, e.g. data.task_patients=16")
    args = ap.parse_args(argv)

    preset = load_preset(args.preset, args.set)
    if args.no_positive_control:
        preset["positive_control"] = False
    f = preset["finetune"]
    if args.trials:
        f["trials"] = args.trials
    methods = _csv(args.methods) or list(preset["methods"])
    extra = list(ALL_METHODS) if args.all_methods else (args.extra or [])
    methods += [m for m in extra if m not in methods]
    budgets = sorted(_csv(args.budgets, int) or [int(b) for b in preset["pretrain"]["budgets"]])
    budgets = [b for b in budgets if b > 0]  # 0 steps is scratch
    fractions = sorted(_csv(args.fractions, float) or [float(x) for x in f["fractions"]])
    fraction = float(args.budget_fraction or f.get("budget_fraction", fractions[0]))
    if fraction not in fractions:
        raise SystemExit(f"transfer_bench: budget fraction {fraction:g} must be one of the label fractions {fractions}")
    tasks = _csv(args.tasks) or list(f["tasks"])
    modes = _csv(args.modes) or list(f.get("modes", ["finetune", "linear_probe"]))
    threads = args.threads or int(preset.get("threads", 2))
    data_overrides = dict(item.split("=", 1) for item in args.data)
    out = (args.out or ROOT / preset.get("out", "bench/transfer")).resolve()
    lanes = args.lanes or int(preset.get("lanes", 1))
    bench = Bench(preset, out, threads, lanes)
    started = bench.started

    data, jobs = data_jobs(bench, data_overrides)
    made = {job.name for job in jobs}
    pretrain_data = [data_job("pretrain")] if data_job("pretrain") in made else []
    jobs += input_jobs(bench, {"pattern" if m in PATTERN_METHODS else "cube" for m in methods}, data, pretrain_data)
    snapshots = {}
    for method in methods:
        snapshots[method], method_jobs = pretrain_jobs(bench, method, budgets)
        jobs += method_jobs
    finals = {m: s[budgets[-1]] for m, s in snapshots.items()}
    final_jobs = [pretrain_job(m, budgets[-1]) for m in methods]
    jobs.append(Job("pretraining curves", lambda: bench.sh("report", "curves", *[out / "pretrain" / m for m in methods],
                                                           "--out", out / "report"), deps=final_jobs, cost=1))
    controls: dict[str, dict[str, Path]] = {}
    if preset.get("positive_control"):
        for task in tasks:
            key = f"control_{task}" if data_job(f"control_{task}") in made else "pretrain"
            controls[task] = {CONTROL: bench.out / "control" / task / "weights" / "best.safetensors"}
            jobs.append(Job(f"positive control {task}", lambda task=task: positive_control(bench, task, data),
                            deps=[data_job(key)] if data_job(key) in made else [], cost=200))
    sweeps = {task: out / "evaluate" / task for task in tasks}
    for task in tasks:
        task_data = [data_job(task)] if data_job(task) in made else []
        control = [f"positive control {task}"] if task in controls else []
        jobs.append(Job(f"evaluate {task}: label fractions x modes",
                        lambda task=task: evaluate(bench, task, data[task], sweeps[task],
                                                   {"scratch": None, **finals, **controls.get(task, {})},
                                                   fractions, modes, args.ttest),
                        deps=task_data + final_jobs + control, cost=3000 if task == "ncc" else 1500))
        if len(budgets) > 1:
            inits = {budget_name(m, b): snapshots[m][b] for m in methods for b in budgets[:-1]}
            jobs.append(Job(f"evaluate {task}: pretraining budgets",
                            lambda task=task, inits=inits: evaluate(bench, task, data[task], out / "evaluate" / f"{task}_budget",
                                                                    inits, [fraction], ["finetune"], args.ttest),
                            deps=task_data + [pretrain_job(m, b) for m in methods for b in budgets[:-1]], cost=600))
    bench.run(jobs)
    budget_panels = {task: budget_values(sweeps[task], out / "evaluate" / f"{task}_budget", methods, budgets, fraction)
                     for task in tasks}
    bench.run([Job("report", lambda: (bench.sh("report", "results", *[sweeps[t] for t in tasks], "--out", out / "report"),
                                      plot_budgets(budget_panels, out / "report" / "budget.png")))])
    report = write_report(bench, methods, tasks, budget_panels, fraction, time.perf_counter() - started, threads, lanes)
    print(report.read_text(encoding="utf-8"))
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
