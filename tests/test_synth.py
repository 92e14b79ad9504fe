import hashlib
import json

import numpy as np
import pytest

from evaluator.store import TASK_NAMES, list_tasks, open_pool, open_task
from evaluator.synth import DISRUPTIVE_SHARE, FRAMES_PER_VIDEO, disruptive_frames, generate


def test_same_seed_same_bytes(tmp_path, small_pool):
    again = tmp_path / "again"
    generate(again, seed=0, size=480, resolution=32)
    for name in [
        "manifest.jsonl",
        "arrays/r32.npy",
        "tasks/kvasir-seg/r32/test_masks.npy",
        "tasks/etis/r32/train_images.npy",
    ]:
        assert (again / name).read_bytes() == (small_pool / name).read_bytes(), name


def test_other_seed_other_pool(tmp_path, small_pool):
    other = tmp_path / "other"
    generate(other, seed=1, size=48, resolution=32)
    assert not np.array_equal(open_pool(other).images(32)[:48], open_pool(small_pool).images(32)[:48])


def test_manifest_fields_and_hashes(small_pool):
    pool = open_pool(small_pool)
    assert pool.size == 480 and len(set(pool.ids)) == 480
    images = pool.images(32)
    for i in (0, 17, 479):
        r = pool.records[i]
        assert set(r) >= {"id", "source", "video", "frame", "sha256"}
        assert r["id"] == f"{r['video']}/f{r['frame']:03d}" and r["id"].startswith(r["source"] + "/")
        assert hashlib.sha256(images[i].tobytes()).hexdigest() == r["sha256"]


def test_videos_are_near_duplicate_frames_and_disruptions_are_planted(small_pool):
    pool = open_pool(small_pool)
    x = pool.images(32).astype(np.float32)
    truth = [json.loads(line) for line in (small_pool / "synth_truth.jsonl").read_text().splitlines()]
    clean = [t["disruption"] is None for t in truth]
    within, across = [], []
    for v in range(len(x) // FRAMES_PER_VIDEO - 1):
        a, b = v * FRAMES_PER_VIDEO, v * FRAMES_PER_VIDEO + 1
        c = (v + 1) * FRAMES_PER_VIDEO
        if clean[a] and clean[b] and clean[c]:
            within.append(np.abs(x[a] - x[b]).mean())
            across.append(np.abs(x[a] - x[c]).mean())
    assert np.median(within) < 0.5 * np.median(across)
    share = 1 - np.mean(clean)
    assert abs(share - DISRUPTIVE_SHARE) < 0.06
    assert {t["disruption"] for t in truth} - {None} == {"blur", "dark", "overexposed", "bubbles"}
    # the public manifest does not leak which frames are disruptive
    assert "disruption" not in (small_pool / "manifest.jsonl").read_text()


def test_eight_tasks_with_binary_masks(small_pool):
    assert list_tasks(small_pool / "tasks") == list(TASK_NAMES)
    kinds = set()
    for name in TASK_NAMES:
        task = open_task(small_pool / "tasks" / name, 32)
        kinds.add(task.kind)
        for split in (task.train, task.test):
            assert split.images.shape[1:] == (32, 32, 3)
            assert set(np.unique(split.masks)) <= {0, 1}
            assert 0.0 < split.masks.mean() < 0.6  # every split has foreground, and it is not everything
    assert kinds == {"polyp", "instrument"}


def test_disruptive_frames_reads_the_ground_truth_in_the_ids_order(small_pool, tmp_path):
    pool = open_pool(small_pool)
    truth = {
        t["id"]: t["disruption"] is not None
        for t in map(json.loads, (small_pool / "synth_truth.jsonl").read_text().splitlines())
    }
    ids = list(reversed(pool.ids))
    flags = disruptive_frames(small_pool, ids)
    assert flags.dtype == bool and flags.tolist() == [truth[i] for i in ids] and 0 < flags.sum() < len(ids)
    with pytest.raises(FileNotFoundError, match="only a pool made by `delbench synth` has ground truth"):
        disruptive_frames(tmp_path, ids)
