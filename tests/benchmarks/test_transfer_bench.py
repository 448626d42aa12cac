"""The transfer benchmark's presets load, ``--set`` edits them, and its budget table joins the right runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transfer_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("transfer_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_presets_name_library_configs_that_load(bench):
    from semantic_genesis.config import load_config

    for name in ("cpu", "gpu"):
        preset = bench.load_preset(name, [])
        p = preset["pretrain"]
        for family in ("cube", "pattern"):
            for method in (*preset["methods"], *bench.ALL_METHODS):
                if (method in bench.PATTERN_METHODS) == (family == "pattern"):
                    config = bench.method_config(p["configs"], method, family)
                    assert load_config(config, [f"method.name={method}", *p["overrides"][family]]).method.name == method
        assert bench.method_config(p["configs"], "rubiks_cube", "cube").startswith("rubiks_cube_3d")
        assert bench.method_config(p["configs"], "self_restoration_patterns", "pattern") == p["configs"]["pattern"]
        for spec in preset["finetune"]["tasks"].values():
            cfg = load_config(spec["config"], spec["overrides"])
            assert cfg.finetune.task in preset["finetune"]["tasks"]
    assert bench.load_preset("gpu", [])["finetune"]["trials"] == 10  # the paper's protocol


def test_set_edits_nested_entries_with_yaml_values(bench):
    preset = bench.load_preset("cpu", ["data.task_patients=16", "finetune.tasks.ncc.overrides=[train.epochs=2]"])
    assert preset["data"]["task_patients"] == 16
    assert preset["finetune"]["tasks"]["ncc"]["overrides"] == ["train.epochs=2"]
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        bench.load_preset("cpu", ["data.task_patients"])
    with pytest.raises(SystemExit, match="not found"):
        bench.load_preset("nowhere.yaml", [])


def test_budget_values_take_scratch_the_intermediate_budgets_and_the_final_weights(bench, tmp_path):
    sweep, budget = tmp_path / "ncc", tmp_path / "ncc_budget"
    final = sweep / "finetune" / "fraction_0.25"
    final.mkdir(parents=True)
    budget.mkdir()
    (sweep / "sweep.json").write_text("{}")
    (final / "results.json").write_text(json.dumps({"metric": "auc", "inits": {
        "scratch": {"values": [0.6, 0.7]}, "mg": {"values": [0.8, None]}}}))
    (budget / "results.json").write_text(json.dumps({"metric": "auc", "inits": {"mg_500": {"values": [0.65, 0.75]}}}))
    metric, values = bench.budget_values(sweep, budget, ["mg"], [500, 2000], 0.25)
    assert metric == "auc" and values == {"mg": {0: [0.6, 0.7], 500: [0.65, 0.75], 2000: [0.8, None]}}
    table = bench.budget_table("ncc", metric, values, 0.25)
    assert "| mg | 65.00 ± 7.07 | 70.00 ± 7.07 | 80.00 |" in table


def test_jobs_run_after_their_dependencies_longest_chain_first(bench, tmp_path):
    order: list[str] = []
    b = bench.Bench({}, tmp_path, threads=1, lanes=1)
    jobs = [bench.Job("short", lambda: order.append("short"), cost=1),
            bench.Job("long", lambda: order.append("long"), cost=5),
            bench.Job("after long", lambda: order.append("after long"), deps=["long"], cost=1),
            bench.Job("tail of short", lambda: order.append("tail of short"), deps=["short"], cost=10)]
    b.run(jobs)
    # ranks: short 1 + 10 = 11 > long 5 + 1 = 6, so the short job (whose dependent is long) starts first
    assert order == ["short", "tail of short", "long", "after long"]
    assert [t[0] for t in b.timings] == order and all(seconds >= 0 for _, _, seconds in b.timings)


def test_two_lanes_run_independent_jobs_at_the_same_time(bench, tmp_path):
    import threading

    both_started = threading.Barrier(2, timeout=10)
    b = bench.Bench({}, tmp_path, threads=1, lanes=2)
    b.run([bench.Job("a", both_started.wait), bench.Job("b", both_started.wait)])  # one lane would time out
    assert sorted(t[0] for t in b.timings) == ["a", "b"]


def test_a_failed_job_stops_its_dependents_and_is_raised(bench, tmp_path):
    ran: list[str] = []

    def fail():
        raise SystemExit("transfer_bench: `semantic-genesis pretrain` failed (exit 1); rerun to resume")

    b = bench.Bench({}, tmp_path, threads=1, lanes=2)
    with pytest.raises(SystemExit, match="failed"):
        b.run([bench.Job("pretrain", fail, cost=5), bench.Job("evaluate", lambda: ran.append("evaluate"), deps=["pretrain"]),
               bench.Job("data", lambda: ran.append("data"))])
    assert "evaluate" not in ran
    with pytest.raises(ValueError, match="unknown jobs"):
        b.run([bench.Job("x", lambda: None, deps=["nowhere"])])
    with pytest.raises(ValueError, match="cycle"):
        b.run([bench.Job("x", lambda: None, deps=["y"]), bench.Job("y", lambda: None, deps=["x"])])
