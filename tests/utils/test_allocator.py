"""The heap setting for CPU batch buffers (utils/allocator.py): freed large blocks are reused."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from semantic_genesis.utils import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates, fills and frees the two 16 MiB batch buffers of a Models Genesis preset call ten times
# (as the kernel path allocates them) and prints the minor page faults of the last nine rounds: a
# buffer served by mmap, or placed on fresh heap pages, is faulted in again every round.
_ROUNDS = """
import resource, sys, torch
from semantic_genesis.transforms._backend import new_batch_like
from semantic_genesis.utils.allocator import keep_large_blocks_in_heap
print(keep_large_blocks_in_heap() is not None if sys.argv[1] == "heap" else True, flush=True)
batch = torch.zeros(32, 1, 64, 64, 32)
def one_round():
    target, work = new_batch_like(batch), new_batch_like(batch)
    target.fill_(1.0)
    work.fill_(2.0)
    del target, work
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is a glibc interface")
def test_freed_batch_buffers_are_reused_without_page_faults():
    applied, faults = _faults("heap")
    assert applied
    # 9 rounds x 2 x 4096 pages of 4 KiB would fault again if the buffers were fresh pages
    assert faults < 200


@pytest.mark.skipif(not GLIBC, reason="mallopt is a glibc interface")
def test_settings_are_reported_and_idempotent():
    first = allocator.keep_large_blocks_in_heap()
    assert first == {"mmap_threshold": 32 * 1024 * 1024, "trim_threshold": 256 * 1024 * 1024}
    assert allocator.keep_large_blocks_in_heap() == first and allocator.applied() == first


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="positive"):
        allocator.keep_large_blocks_in_heap(mmap_threshold=0)
    with pytest.raises(ValueError, match="caps M_MMAP_THRESHOLD"):
        allocator.keep_large_blocks_in_heap(mmap_threshold=64 * 1024 * 1024)
