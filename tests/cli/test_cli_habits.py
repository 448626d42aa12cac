"""Command-line habits shared by every command: overrides anywhere, --data/--out, -q/-v, help text,
--print-config, --dry-run, flag/override conflicts, closed pipes."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys

import pytest

from semantic_genesis.cli import _walk, build_parser, main


def test_every_command_takes_quiet_and_verbose():
    parser = build_parser()
    leaves = list(_walk(parser))
    assert len(leaves) > 15  # commands and their sub-actions (phantom ct, report results, weights import, ...)
    for leaf in leaves:
        options = {s for action in leaf._actions for s in action.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= options, leaf.prog


CONFIG_COMMANDS = ["cubes", "discover", "pretrain", "finetune", "evaluate"]


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_config_commands_share_data_out_print_config_and_dry_run(command):
    leaf = next(p for p in _walk(build_parser()) if p.prog == f"semantic-genesis {command}")
    options = {s for action in leaf._actions for s in action.option_strings}
    assert {"--config", "--data", "--out", "--print-config", "--dry-run"} <= options


def test_help_keeps_line_breaks_of_the_examples():
    proc = subprocess.run([sys.executable, "-m", "semantic_genesis", "cubes", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    first = lines.index(next(line for line in lines if line.strip().startswith("semantic-genesis cubes --data data/ct --out data/cubes ")))
    assert lines[first + 1].strip().startswith("semantic-genesis cubes --config models_genesis_3d_tiny")
    assert lines[first + 2].strip().startswith("semantic-genesis cubes --data data/luna16")
    assert "``" not in proc.stdout and "Examples:" in proc.stdout


def test_overrides_anywhere_on_the_line_also_after_flags(ct_cohort, tmp_path, cli):
    out = tmp_path / "cubes"
    status, printed, _ = cli("cubes", "--data", ct_cohort, "cubes.cubes_per_scan=1", "--out", out, "-q", "seed=3",
                             "--config", "models_genesis_3d_tiny", "cubes.dtype=uint8")
    assert status == 0 and "cube set at" in printed
    settings = json.loads((out / "manifest.json").read_text())["attrs"]["settings"]
    assert settings["seed"] == 3 and settings["cubes"]["cubes_per_scan"] == 1 and settings["cubes"]["dtype"] == "uint8"


def test_pretrain_takes_data_and_out_flags_and_overrides_after_them(cube_set, tmp_path, cli):
    run = tmp_path / "run"
    status, printed, _ = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, "--out", run,
                             "train.max_steps=1", "--print-config", "-q")
    assert status == 0
    assert f"data: {cube_set}" in printed and f"out: {run}" in printed and "max_steps: 1" in printed
    assert "progress: false" in printed  # -q turns the progress bars off
    status, printed, _ = cli("pretrain", "--config", "models_genesis_3d_tiny", f"data={cube_set}", f"out={run}",
                             "train.max_steps=1", "--dry-run")
    assert status == 0 and "dry run of 'pretrain'" in printed
    assert re.search(r"data  .*: [1-9]\d* training and \d+ validation samples", printed)
    assert "will be created" in printed and "at most 1 steps" in printed
    assert not run.exists()


def test_discover_takes_data_and_out_flags(ct_cohort, tmp_path, cli):
    run = tmp_path / "sg"
    status, printed, _ = cli("discover", "--config", "semantic_genesis_3d_tiny", "--data", ct_cohort, "--out", run,
                             "discovery.num_neighbours=1", "discovery.num_val_neighbours=1", "discovery.num_classes=2",
                             "discovery.classes_per_reference=1", "--dry-run")
    assert status == 0, printed
    assert "3 patients" in printed and "dry run of 'discover'" in printed
    assert not run.exists()


def test_flag_and_override_of_one_key_must_agree(cube_set, tmp_path, cli):
    status, _, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, f"data={tmp_path}",
                         "--out", tmp_path / "run")
    assert status == 2 and err.startswith(f"error: --data {cube_set} and data={tmp_path} disagree")
    status, _, err = cli("evaluate", "--task", "ncc", "finetune.task=ncs", "--data", tmp_path, "--out", tmp_path / "e")
    assert status == 2 and "--task ncc and finetune.task=ncs disagree" in err
    # the same value twice (paths compared after normalisation) is fine
    status, printed, _ = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set,
                             f"data={cube_set}/", "--out", tmp_path / "run", "--print-config")
    assert status == 0 and f"data: {cube_set}" in printed


def test_unknown_key_on_the_command_line_is_reported_as_such(tmp_path, cli):
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  batch_size: 4\n")
    status, _, err = cli("pretrain", "--config", config, "train.batchsize=3", "--print-config")
    assert status == 2 and err.startswith("error: command line: unknown config key train.batchsize; valid keys of train:")
    config.write_text("train:\n  batchsize: 4\n")
    status, _, err = cli("pretrain", "--config", config, "train.epochs=3", "--print-config")
    assert status == 2 and err.startswith(f"error: {config}: unknown config key train.batchsize")


def test_unknown_arguments_get_the_usage_of_their_command():
    proc = subprocess.run([sys.executable, "-m", "semantic_genesis", "cubes", "--bogus", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: semantic-genesis cubes")
    assert "error: unrecognized arguments: --bogus" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "semantic_genesis", "info", "seed=1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "takes no key=value config overrides" in proc.stderr


def test_verbose_prints_the_traceback_of_an_error(tmp_path, capsys):
    assert main(["pretrain", "--config", str(tmp_path / "missing.yaml"), "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(tmp_path, cli, monkeypatch):
    out = tmp_path / "xray"
    status, _, err = cli("phantom", "xray", "--patients", "1", "--out", out, "-q")
    assert status == 0, err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    status, _, err = cli("phantom", "xray", "--patients", "3", "--out", out, "-q")
    assert status == 2
    assert re.fullmatch(rf"error: {re.escape(str(out))}/\S+: No space left on device\n", err), err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before  # nothing written before is lost or changed
    assert not [p for p in after if p.name.startswith(".")]  # no temporary file left behind


def test_an_operating_system_error_is_one_line(cli):
    status, _, err = cli("phantom", "xray", "--patients", "1", "--out", "/proc/semantic-genesis-test", "-q")
    assert (status, err) == (2, "error: /proc/semantic-genesis-test: No such file or directory\n")


def test_phantom_dry_run_writes_nothing(tmp_path, cli):
    status, printed, _ = cli("phantom", "ct", "--patients", "2", "--out", tmp_path / "ct", "--dry-run", "-q")
    assert status == 0 and "would write 2 ct patient(s)" in printed
    assert not (tmp_path / "ct").exists()


def _closed_pipe(argv, buffered: bool) -> subprocess.CompletedProcess:
    """Run the CLI with a stdout pipe whose reader has gone (as in ``... | head -1`` after one line)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    try:
        return subprocess.run([sys.executable, "-m", "semantic_genesis", *argv], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, env=env)
    finally:
        os.close(write)


@pytest.mark.parametrize("argv", [
    ("--help",),
    ("configs",),
    ("configs", "show", "semantic_genesis_3d"),
    ("pretrain", "--list-methods"),
    ("pretrain", "--config", "models_genesis_3d", "--print-config"),
])
@pytest.mark.parametrize("buffered", [True, False])
def test_a_closed_pipe_ends_quietly(argv, buffered):
    proc = _closed_pipe(argv, buffered)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
