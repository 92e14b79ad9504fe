"""A full disk mid-pretraining says "disk" and where, and leaves no half-written file behind. The disk is a
real one: a tmpfs of a few kilobytes (the test skips where mounting is not permitted)."""

from __future__ import annotations

import subprocess

import pytest

from evaluator.protocol import pretrain_encoder
from evaluator.selection import load_selection
from evaluator.store import DiskFullError, open_pool
from evaluator.tier import load_tier
from tests.conftest import MICRO_TIER


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:200]}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_mid_pretraining_is_a_disk_error_with_no_temporary_left(
    small_pool, small_pool_ids, tiny_disk
):
    tier = load_tier(MICRO_TIER)
    pool = open_pool(small_pool)
    selection = load_selection("\n".join(small_pool_ids[:100]).encode(), pool.index_of)
    with pytest.raises(DiskFullError, match="no space left on the disk at") as info:
        pretrain_encoder(pool=pool, selection=selection, tier=tier, seed=0, cache_dir=tiny_disk, device="cpu")
    assert str(tiny_disk) in str(info.value) and "bytes free" in str(info.value)
    assert not [p for p in tiny_disk.rglob("*.tmp")]  # nothing half-written is left to trip the next attempt
