"""The README shows exactly the transfer table ``make demo`` prints: the demo's comparison, update and
report helpers on small tables (the demo itself runs for minutes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_under_test", REPO / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README = """# project

Some text.

<!-- demo-table:begin (written by make demo) -->
| initialisation | NCC AUC% |
|---|---|
| scratch | 89.94 ± 3.55 † |
| semantic_genesis | **90.82 ± 1.96** |
<!-- demo-table:end -->

More text.
"""
RESULTS = """# Transfer results (Semantic Genesis Table 2 layout)

Mean ± s.d. (%) over 3 trials per initialisation.

| initialisation | NCC AUC% |
|---|---|
| scratch | 89.94 ± 3.55 † |
| semantic_genesis | **90.82 ± 1.96** |

- NCC: demo_out/evaluate/ncc
"""


def test_same_table_gives_no_diff(demo):
    table = demo.table_lines(RESULTS)
    assert table[0] == "| initialisation | NCC AUC% |" and len(table) == 4
    assert demo.readme_table(README) == table
    assert demo.compare_tables(README, table) == ""


def test_a_changed_number_gives_a_diff_naming_both_lines(demo):
    table = demo.table_lines(RESULTS.replace("89.94 ± 3.55", "88.10 ± 2.00"))
    diff = demo.compare_tables(README, table)
    assert "-| scratch | 89.94 ± 3.55 † |" in diff and "+| scratch | 88.10 ± 2.00 † |" in diff
    assert "semantic_genesis" not in [line for line in diff.splitlines() if line.startswith(("+", "-"))][2:]


def test_update_replaces_only_the_table(demo):
    table = demo.table_lines(RESULTS.replace("89.94 ± 3.55", "88.10 ± 2.00"))
    updated = demo.with_table(README, table)
    assert demo.compare_tables(updated, table) == ""
    assert updated.startswith("# project\n\nSome text.\n") and updated.endswith("<!-- demo-table:end -->\n\nMore text.\n")
    assert demo.with_table(updated, table) == updated  # idempotent


def test_readme_without_markers_is_an_error(demo):
    with pytest.raises(ValueError, match="demo-table"):
        demo.readme_table("# no table here\n")


def test_the_real_readme_has_the_demo_table(demo):
    table = demo.readme_table((REPO / "README.md").read_text(encoding="utf-8"))
    assert table[0].startswith("| initialisation | NCC AUC% | NCS IoU (pooled)% |")  # the official pooled IoU
    assert {line.split("|")[1].strip() for line in table[2:]} == {"scratch", "models_genesis", "semantic_genesis"}


def test_check_readme_fails_loudly_on_a_difference(demo, tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    results = tmp_path / "results.md"
    results.write_text(RESULTS.replace("90.82 ± 1.96", "91.00 ± 1.00"))
    monkeypatch.setattr(demo, "README", readme)
    args = type("Args", (), dict(demo.DEFAULTS, update_readme=False))()
    assert demo.check_readme(results, args) == 1
    err = capsys.readouterr().err
    assert "differs from the one in" in err and "+| semantic_genesis | **91.00 ± 1.00** |" in err
    args.update_readme = True
    assert demo.check_readme(results, args) == 0
    assert "91.00 ± 1.00" in readme.read_text() and "More text." in readme.read_text()
    args.update_readme = False
    assert demo.check_readme(results, args) == 0
    args.trials = 5  # other settings than the README's: no check
    results.write_text(RESULTS)
    assert demo.check_readme(results, args) == 0 and "README check skipped" in capsys.readouterr().out


def test_embedded_results_nest_under_the_report_heading(demo):
    lines = demo.embed_markdown("# Transfer results: ncc\n\n## NCC (classification, AUC)\n\ntext\n", 3)
    assert lines == ["#### NCC (classification, AUC)", "", "text"]


def test_demo_pins_one_thread_per_stage(demo):
    assert demo.PINNED_THREADS["OMP_NUM_THREADS"] == "1" and len(demo.PINNED_THREADS) >= 3
    makefile = (REPO / "Makefile").read_text()
    assert "OMP_NUM_THREADS=1" in makefile.split("\ndemo:")[0]  # PIN_THREADS, used by the demo target


README_BOTH = README.replace("More text.", """More text.

<!-- demo-table-2d:begin (written by make demo) -->
| initialisation | DXC AUC% |
|---|---|
| scratch | 60.00 ± 1.00 |
<!-- demo-table-2d:end -->
""")


def test_the_2d_table_has_its_own_markers(demo):
    markers = (demo.TABLE_2D_BEGIN, demo.TABLE_2D_END)
    assert demo.readme_table(README_BOTH, markers) == ["| initialisation | DXC AUC% |", "|---|---|", "| scratch | 60.00 ± 1.00 |"]
    new = ["| initialisation | DXC AUC% |", "|---|---|", "| scratch | 61.00 ± 2.00 |"]
    updated = demo.with_table(README_BOTH, new, markers)
    assert demo.readme_table(updated, markers) == new
    assert demo.readme_table(updated) == demo.readme_table(README_BOTH)  # the 3D table is untouched
    assert "-| scratch | 60.00 ± 1.00 |" in demo.compare_tables(README_BOTH, new, markers)
    with pytest.raises(ValueError, match="demo-table-2d"):
        demo.readme_table(README, markers)


def test_the_real_readme_has_the_2d_demo_table(demo):
    table = demo.readme_table((REPO / "README.md").read_text(encoding="utf-8"), (demo.TABLE_2D_BEGIN, demo.TABLE_2D_END))
    assert table[0].startswith("| initialisation | DXC AUC% | PXS IoU (pooled)% |")
    assert {line.split("|")[1].strip() for line in table[2:]} == {"scratch", "models_genesis_2d", "semantic_genesis_2d"}
