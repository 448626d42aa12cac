"""One command per run folder: every writing command refuses a folder another process is writing, in
one line; a lock left by a dead process is taken over with a warning; the lock goes away when the
command ends, normally or with an error; --dry-run and ranks > 0 take none."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semantic_genesis.errors import RunInUseError, TrainingError
from semantic_genesis.utils.runlock import LOCK_NAME, run_lock

IN_USE = r"error: {run} is in use by pid {pid} \(started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\)\n"
FINETUNE_TINY = ["--config", "finetune_tiny", "model.width=0.125", "train.epochs=1", "train.device=cpu",
                 "finetune.max_negatives=6"]
HOLDER = """
import sys
from semantic_genesis.utils.runlock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder():
    """``holder(run) -> pid``: another process that holds the lock of ``run`` until the test ends."""
    procs = []

    def start(run: Path) -> int:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc.pid

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def luna16(tmp_path_factory):
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("lock_luna16") / "luna16"
    export_ct_cohort(root, 6, seed=0, layout="luna16", shape=(64, 64, 48))
    return root


def _commands(ct_cohort, cube_set, luna16):
    return {
        "cubes": ["cubes", "--config", "models_genesis_3d_tiny", "--data", ct_cohort],
        "pretrain": ["pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set],
        "discover": ["discover", "--config", "semantic_genesis_3d_tiny", "--data", ct_cohort,
                     "discovery.num_neighbours=1", "discovery.num_val_neighbours=0", "discovery.num_classes=2"],
        "finetune": ["finetune", "--task", "ncc", "--init", "scratch", "--data", luna16, *FINETUNE_TINY],
        "evaluate": ["evaluate", "--task", "ncc", "--inits", "scratch", "--trials", "1", "--data", luna16, *FINETUNE_TINY],
    }


@pytest.mark.parametrize("command", ["cubes", "pretrain", "discover", "finetune", "evaluate"])
def test_a_second_command_on_a_folder_in_use_fails_in_one_line(command, cli, holder, ct_cohort, cube_set, luna16,
                                                               tmp_path):
    run = tmp_path / "run"
    pid = holder(run)
    argv = _commands(ct_cohort, cube_set, luna16)[command]
    status, out, err = cli(*argv, "--out", run, "-q")
    assert status == 2
    assert re.fullmatch(IN_USE.format(run=re.escape(str(run)), pid=pid), err), err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # the refused command wrote nothing
    # --dry-run writes nothing and takes no lock
    status, out, err = cli(*argv, "--out", run, "-q", "--dry-run")
    assert status == 0, err
    assert "dry run of" in out


def test_a_command_holds_the_lock_while_it_runs_and_releases_it_after_success_and_error(cli, cube_set, tmp_path,
                                                                                       monkeypatch):
    import semantic_genesis.training.trainer as trainer

    run = tmp_path / "run"
    seen = []

    def fake_train(cfg, method):
        text = (run / LOCK_NAME).read_text()
        seen.append(text)
        with pytest.raises(RunInUseError, match=rf"{re.escape(str(run))} is in use by pid \d+"):
            with run_lock(run):
                pass
        raise TrainingError("the training loss became nan at step 3")

    monkeypatch.setattr(trainer, "train", fake_train)
    argv = ["pretrain", "--config", "models_genesis_3d_tiny", "--data", cube_set, "--out", run, "-q"]
    status, _, err = cli(*argv)
    assert status == 2 and err == "error: the training loss became nan at step 3\n"
    assert seen and f"host={socket.gethostname()}" in seen[0] and re.search(r"^pid=\d+$", seen[0], re.M)
    assert not (run / LOCK_NAME).exists()  # released after the error

    def finished_train(cfg, method):
        assert (run / LOCK_NAME).is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", finished_train)
    assert cli(*argv)[0] == 130
    assert not (run / LOCK_NAME).exists()  # released after an interruption

    monkeypatch.undo()
    status, out, err = cli(*argv, "train.max_steps=1", "train.device=cpu")
    assert status == 0, err
    assert not (run / LOCK_NAME).exists()  # released after a normal end
    assert (run / "weights" / "final.safetensors").is_file()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_taken_over_with_one_warning(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pid = _dead_pid()
    (run / LOCK_NAME).write_text(f"pid={pid}\nhost={socket.gethostname()}\nstarted=2026-01-02 03:04:05\n")
    with pytest.warns(UserWarning) as caught:
        with run_lock(run) as path:
            assert f"pid={__import__('os').getpid()}" in path.read_text()
    assert len(caught) == 1
    assert str(caught[0].message) == (f"{run}: taking over the lock of pid {pid} on {socket.gethostname()} "
                                      "(started 2026-01-02 03:04:05), which no longer holds it")
    assert not (run / LOCK_NAME).exists()


def test_the_lock_is_exclusive_within_a_process_and_skipped_on_other_ranks(tmp_path, monkeypatch):
    run = tmp_path / "new" / "run"  # created by the lock
    with run_lock(run):
        with pytest.raises(RunInUseError) as info:
            with run_lock(run):
                pass
        assert "\n" not in str(info.value)
        monkeypatch.setenv("RANK", "1")  # torchrun rank 1: rank 0 holds the lock, this rank writes nothing
        with run_lock(run) as path:
            assert path is None
    monkeypatch.setenv("RANK", "0")
    with run_lock(run):
        pass


def test_the_lock_is_released_when_the_holder_is_killed(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunInUseError):
        with run_lock(run):
            pass
    proc.kill()
    proc.wait(timeout=30)
    time.sleep(0.05)
    with pytest.warns(UserWarning, match=rf"taking over the lock of pid {proc.pid} "):
        with run_lock(run):
            pass


def test_a_second_cli_process_on_a_held_lock_exits_2_with_one_line(ct_cohort, tmp_path):
    import os

    run = tmp_path / "run"
    with run_lock(run):
        proc = subprocess.run([sys.executable, "-m", "semantic_genesis", "cubes", "--config", "models_genesis_3d_tiny",
                               "--data", str(ct_cohort), "--out", str(run), "-q"], capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 2
    assert re.fullmatch(IN_USE.format(run=re.escape(str(run)), pid=os.getpid()), proc.stderr), proc.stderr
    assert proc.stdout == ""
