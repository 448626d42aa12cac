"""Atomic writes: the old or the new file, never half of one; permissions follow the umask like ``open``."""

from __future__ import annotations

import contextlib
import errno
import os
import stat

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.io.images2d import Image2D, write_image2d
from semantic_genesis.io.volumes import Volume, write_dicom_series, write_volume
from semantic_genesis.utils.atomic import atomic_open, atomic_path, current_umask, write_bytes, write_json, write_text


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_current_umask_reads_without_changing_it():
    with umask(0o027):
        assert current_umask() == 0o027
        assert current_umask() == 0o027


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_0666_minus_umask(tmp_path, mask, expected):
    with umask(mask):
        write_text(tmp_path / "a.txt", "hello")
        write_bytes(tmp_path / "b.bin", b"\x00\x01")
        write_json(tmp_path / "c.json", {"x": 1})
        with atomic_path(tmp_path / "d.nii.gz") as tmp:
            tmp.write_bytes(b"payload")
        with atomic_open(tmp_path / "e.bin") as handle:
            handle.write(b"x")
    for name in ("a.txt", "b.bin", "c.json", "d.nii.gz", "e.bin"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json", "d.nii.gz", "e.bin"]


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "shared.json"
    with umask(0o022):
        write_json(target, {"v": 1})
        os.chmod(target, 0o640)
        write_json(target, {"v": 2})
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 3}')
    assert _mode(target) == 0o640 and target.read_text() == '{"v": 3}'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("new")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def _disk_full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_old_file_and_names_the_one_being_written(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_json(target, {"v": 1})
    monkeypatch.setattr(os, "fsync", _disk_full)  # the kernel reports ENOSPC when the data is flushed
    with pytest.raises(OSError) as raised:
        write_json(target, {"v": 2})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_library_writer_failing_on_a_full_disk_names_the_final_file(tmp_path):
    target = tmp_path / "scan.nii.gz"
    with pytest.raises(OSError) as raised, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        _disk_full()
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_an_error_that_already_names_a_file_is_left_as_it_is(tmp_path):
    with pytest.raises(FileNotFoundError) as raised, atomic_open(tmp_path / "out.bin") as handle:
        handle.write((tmp_path / "missing_input.bin").read_bytes())
    assert raised.value.filename == str(tmp_path / "missing_input.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_volume_image_and_dicom_writers_honour_the_umask(tmp_path, mask, expected):
    vol = Volume(np.zeros((4, 5, 3)), metadata={"modality": "ct"})
    with umask(mask):
        for name in ("v.nii.gz", "v.nii", "v.npy", "v.mhd", "v.mha", "v.nrrd"):
            write_volume(vol, tmp_path / name, dtype="int16")
        write_dicom_series(vol, tmp_path / "series")
        write_image2d(Image2D(np.zeros((6, 7))), tmp_path / "i.png")
        write_image2d(Image2D(np.zeros((6, 7))), tmp_path / "i.dcm")
    written = _files(tmp_path)
    assert {p.name for p in written} >= {"v.json", "v.raw", "slice_0000.dcm", "i.png", "i.dcm"}
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_cli_outputs_are_readable_by_the_group_under_umask_022(tmp_path, capsys):
    out = tmp_path / "luna"
    with umask(0o022):
        assert main(["phantom", "ct", "--patients", "1", "--seed", "1", "--out", str(out), "--layout", "luna16",
                     "--shape", "32", "32", "16", "--quiet"]) == 0
    written = _files(out)
    assert len(written) >= 4  # .mhd, .raw, annotations.csv, candidates.csv
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: "0o644" for p in written}
