import hashlib
import json

import numpy as np
import pytest

from evaluator.store import TASK_NAMES, list_tasks, open_pool, open_task
from evaluator.synth import (
    DISRUPTIVE_SHARE,
    FRAMES_PER_VIDEO,
    SOURCES_V2,
    disruptive_frames,
    generate,
    pool_truth,
    truth_selection,
)

# sha256 of `generate(seed=0, size=480, resolution=32, version=1)`'s arrays/r32.npy, as version 1 always made it
V1_R32_SHA256 = "001e9fda174ec7a2b250291a4cf7b4539b66ca6078e640b2796f54ab8de35426"


@pytest.fixture(scope="module")
def v1_pool(tmp_path_factory):
    out = tmp_path_factory.mktemp("v1") / "pool"
    generate(out, seed=0, size=480, resolution=32, version=1)
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_same_seed_same_bytes(tmp_path, small_pool, v1_pool, version):
    again = tmp_path / "again"
    generate(again, seed=0, size=480, resolution=32, version=version)
    first = v1_pool if version == 1 else small_pool
    for name in [
        "manifest.jsonl",
        "synth_truth.jsonl",
        "arrays/r32.npy",
        "tasks/kvasir-seg/r32/test_masks.npy",
        "tasks/etis/r32/train_images.npy",
    ]:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert json.loads((first / "pool.json").read_text())["generator"] == f"delbench-synth/{version}"


def test_version_1_keeps_its_bytes(v1_pool):
    """The uniform pool's tables stay reproducible: its bytes are those it had before version 2 existed."""
    digest = hashlib.sha256((v1_pool / "arrays" / "r32.npy").read_bytes()).hexdigest()
    assert digest == V1_R32_SHA256


def test_unknown_version_is_refused(tmp_path):
    with pytest.raises(ValueError, match="version 3 does not exist"):
        generate(tmp_path / "x", size=10, resolution=32, version=3)


def test_other_seed_other_pool(tmp_path, small_pool):
    other = tmp_path / "other"
    generate(other, seed=1, size=48, resolution=32)
    assert not np.array_equal(open_pool(other).images(32)[:48], open_pool(small_pool).images(32)[:48])


def test_manifest_fields_and_hashes(v1_pool):
    pool = open_pool(v1_pool)
    assert pool.size == 480 and len(set(pool.ids)) == 480
    images = pool.images(32)
    for i in (0, 17, 479):
        r = pool.records[i]
        assert set(r) >= {"id", "source", "video", "frame", "sha256"}
        assert r["id"] == f"{r['video']}/f{r['frame']:03d}" and r["id"].startswith(r["source"] + "/")
        assert hashlib.sha256(images[i].tobytes()).hexdigest() == r["sha256"]


def test_videos_are_near_duplicate_frames_and_disruptions_are_planted(v1_pool):
    pool = open_pool(v1_pool)
    x = pool.images(32).astype(np.float32)
    truth = [json.loads(line) for line in (v1_pool / "synth_truth.jsonl").read_text().splitlines()]
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
    assert "disruption" not in (v1_pool / "manifest.jsonl").read_text()


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


# ------------------------------------------------------------------------------ version 2: uneven redundancy


@pytest.fixture(scope="module")
def v2(small_pool):
    pool = open_pool(small_pool)
    truth = [json.loads(line) for line in (small_pool / "synth_truth.jsonl").read_text().splitlines()]
    return pool, truth, pool.images(32)


def test_v2_sources_are_single_shots_uneven_videos_and_long_capsule_videos(v2):
    pool, _, _ = v2
    lengths: dict[str, dict[str, int]] = {}
    for r in pool.records:
        lengths.setdefault(r["source"], {}).setdefault(r["video"], 0)
        lengths[r["source"]][r["video"]] += 1
    assert set(lengths) == set(SOURCES_V2)
    shots = lengths["synth-gastrovision"]
    assert all(n == 1 for n in shots.values())
    videos = sorted(lengths["synth-hyperkvasir"].values())
    assert videos[-1] >= 5 * videos[0]  # lengths vary widely
    capsule = lengths["synth-capsule"].values()
    assert np.median(list(capsule)) > 2 * np.median(videos)
    # frames from a uniform draw come mostly from the few long videos, not from the many single shots
    frames = {s: sum(v.values()) / pool.size for s, v in lengths.items()}
    n_groups = {s: len(v) / sum(len(x) for x in lengths.values()) for s, v in lengths.items()}
    assert frames["synth-capsule"] > 0.35 and n_groups["synth-capsule"] < 0.1
    assert frames["synth-gastrovision"] < 0.2 and n_groups["synth-gastrovision"] > 0.5


def test_v2_copies_are_exact_or_one_grey_level_off_within_and_across_sources(v2):
    pool, truth, x = v2
    row = {r["id"]: i for i, r in enumerate(truth)}
    copies = [(i, row[t["copy_of"]], t["copy"]) for i, t in enumerate(truth) if t["copy_of"]]
    assert len(copies) == round(0.05 * pool.size)
    kinds, crossing = set(), set()
    for i, o, kind in copies:
        diff = x[i].astype(np.int16) - x[o].astype(np.int16)
        if kind == "exact":
            assert not diff.any() and pool.records[i]["sha256"] == pool.records[o]["sha256"]
        else:
            assert np.abs(diff).max() == 1 and np.abs(diff).min() == 1
        kinds.add(kind)
        crossing.add(pool.records[i]["source"] != pool.records[o]["source"])
    assert kinds == {"exact", "near"} and crossing == {True, False}


def test_v2_disruption_is_uneven_and_pathology_rare(v2):
    pool, truth, x = v2
    by_source: dict[str, list[dict]] = {}
    for r, t in zip(pool.records, truth, strict=True):
        by_source.setdefault(r["source"], []).append(t)
    share = {s: np.mean([t["disruption"] is not None for t in ts]) for s, ts in by_source.items()}
    assert share["synth-hyperkvasir"] > 0.4 > share["synth-capsule"] > share["synth-gastrovision"]
    kinds = {t["disruption"] for t in truth} - {None}
    assert kinds == {"blur", "dark", "overexposed", "bubbles", "black", "noise"}
    black = [i for i, t in enumerate(truth) if t["disruption"] == "black"]
    assert x[black].max() <= 3  # a blank screen
    shows = np.array([bool(t["shows"]) for t in truth])
    assert 0.02 < shows.mean() < 0.35
    per_video: dict[str, list[bool]] = {}
    for t, s in zip(truth, shows, strict=True):
        per_video.setdefault(t["video"], []).append(s)
    long_videos = [np.mean(v) for v in per_video.values() if len(v) > 5]
    assert min(long_videos) == 0.0 and max(long_videos) > 0.2  # unevenly spread over the videos
    manifest = (pool.path / "manifest.jsonl").read_text()
    assert not any(word in manifest for word in ("copy", "disruption", "shows", "polyp"))


def test_truth_selections_are_the_ceiling_and_the_floor(small_pool):
    pool = open_pool(small_pool)
    truth = pool_truth(small_pool, pool.ids)
    oracle = truth_selection(truth, "oracle", 48, seed=0)
    assert len(oracle) == 48 == len(set(oracle.tolist()))
    assert (
        not truth.disruptive[oracle].any()
        and truth.copies_among(oracle) == 0
        and not truth.copies[oracle].any()
    )
    assert len(set(truth.video[oracle])) == 48  # one frame per video while there are videos left
    worst = truth_selection(truth, "disruptive only", 48, seed=0)
    assert truth.disruptive[worst].all()
    assert np.array_equal(truth_selection(truth, "oracle", 48, seed=0), oracle)
    with pytest.raises(ValueError, match="only"):
        truth_selection(truth, "disruptive only", pool.size, seed=0)
