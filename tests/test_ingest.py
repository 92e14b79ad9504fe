"""`delbench ingest` on fixture trees in each of the eleven published layouts (see ingest_fixtures.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluator.ingest.task_layouts import hash_split
from evaluator.store import TASK_NAMES, PoolWriter, open_pool, open_task
from tests.ingest_fixtures import (
    RES,
    ingest_pool,
    ingest_task,
    make_pool_tree,
    make_task_tree,
    run,
    write_image,
    write_mask,
)

REPO = Path(__file__).resolve().parents[1]


def expected_image(path: Path, res: int) -> np.ndarray:
    """The documented preprocessing, computed independently: centre square crop, bilinear resize."""
    with Image.open(path) as im:
        w, h = im.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        return np.asarray(im.convert("RGB").resize((res, res), Image.Resampling.BILINEAR, box=box))


def expected_mask(path: Path, res: int) -> np.ndarray:
    """The documented mask rule, computed independently: grey > 127, the image's crop, nearest resize."""
    with Image.open(path) as im:
        w, h = im.size
        binary = Image.fromarray((np.asarray(im.convert("L")) > 127).astype(np.uint8))
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return np.asarray(binary.resize((res, res), Image.Resampling.NEAREST, box=box))


def snapshot(pool_dir: Path, ids: list[str]) -> dict[str, tuple[dict, np.ndarray]]:
    pool = open_pool(pool_dir)
    images = pool.images(32)
    return {i: (pool.records[pool.index_of[i]], np.array(images[pool.index_of[i]])) for i in ids}


# ------------------------------------------------------------------------------------------ pool


@pytest.mark.parametrize("source", ["hyper-kvasir", "kvasir-capsule", "gastrovision"])
def test_each_pool_source_layout_is_ingested(tmp_path, capsys, source):
    tree = make_pool_tree(source, tmp_path / source)
    code, out, err = ingest_pool(capsys, tree, tmp_path / "pool")
    assert code == 0, err
    assert f"{tree.corrupt}: cannot decode" in out
    pool = open_pool(tmp_path / "pool")
    assert pool.ids == tree.ids
    assert pool.resolutions == (16, 32)
    for record, image in zip(pool.records, pool.images(32), strict=True):
        source_file = tree.root / record["path"]
        assert record["sha256"] == hashlib.sha256(source_file.read_bytes()).hexdigest()
        assert record["bytes"] == source_file.stat().st_size
        assert record["source"] == source
        assert np.array_equal(image, expected_image(source_file, 32))
        assert (record["video"], record["frame"]) == tree.videos.get(record["id"], (record["id"], 0))
        assert record.get("label") == tree.labels.get(record["id"])
    meta = json.loads((tmp_path / "pool" / "pool.json").read_text())
    assert meta["sources"][source]["root"] == str(tree.root.resolve())
    assert [s["path"] for s in meta["sources"][source]["skipped"]] == [
        tree.corrupt.relative_to(tree.root).as_posix()
    ]


def test_sources_accumulate_and_reingest_keeps_ids(tmp_path, capsys):
    pool_dir = tmp_path / "pool"
    trees = {s: make_pool_tree(s, tmp_path / s) for s in ("hyper-kvasir", "kvasir-capsule", "gastrovision")}
    assert ingest_pool(capsys, trees["hyper-kvasir"], pool_dir)[0] == 0
    first = snapshot(pool_dir, trees["hyper-kvasir"].ids)
    # The second source goes through the worker-process path.
    code, out, err = ingest_pool(capsys, trees["kvasir-capsule"], pool_dir, "--workers", "2")
    assert code == 0, err
    assert snapshot(pool_dir, trees["hyper-kvasir"].ids).keys() == first.keys()
    for sample_id, (record, image) in snapshot(pool_dir, trees["hyper-kvasir"].ids).items():
        assert record == first[sample_id][0]
        assert np.array_equal(image, first[sample_id][1])
    assert ingest_pool(capsys, trees["gastrovision"], pool_dir)[0] == 0
    all_ids = sorted(i for t in trees.values() for i in t.ids)
    assert open_pool(pool_dir).ids == all_ids

    code, out, _ = ingest_pool(capsys, trees["hyper-kvasir"], pool_dir)  # the same source again: replaced
    assert code == 0
    assert "replaced the pool's 5 earlier hyper-kvasir records" in out
    assert open_pool(pool_dir).ids == all_ids
    again = snapshot(pool_dir, trees["hyper-kvasir"].ids)
    for sample_id, (record, image) in first.items():
        assert record == again[sample_id][0]
        assert np.array_equal(image, again[sample_id][1])
    assert sorted(json.loads((pool_dir / "pool.json").read_text())["sources"]) == sorted(trees)


def test_ids_do_not_depend_on_where_the_download_lives(tmp_path, capsys):
    tree = make_pool_tree("kvasir-capsule", tmp_path / "a" / "kvasir-capsule")
    assert ingest_pool(capsys, tree, tmp_path / "pool1")[0] == 0
    moved = shutil.copytree(tree.root, tmp_path / "b" / "elsewhere")
    tree.root = moved
    assert ingest_pool(capsys, tree, tmp_path / "pool2")[0] == 0
    one, two = open_pool(tmp_path / "pool1"), open_pool(tmp_path / "pool2")
    assert one.records == two.records
    assert np.array_equal(one.images(16), two.images(16))


def test_strict_fails_and_writes_nothing(tmp_path, capsys):
    tree = make_pool_tree("gastrovision", tmp_path / "gastrovision")
    code, _, err = ingest_pool(capsys, tree, tmp_path / "pool", "--strict")
    assert code == 1
    assert str(tree.corrupt) in err and "nothing written" in err
    assert not (tmp_path / "pool" / "pool.json").exists()
    assert not list(tmp_path.glob(".pool.*-*")), "no staging or scratch folder may be left"

    other = make_pool_tree("kvasir-capsule", tmp_path / "kvasir-capsule")
    assert ingest_pool(capsys, other, tmp_path / "pool")[0] == 0
    before = (tmp_path / "pool" / "manifest.jsonl").read_bytes()
    assert ingest_pool(capsys, tree, tmp_path / "pool", "--strict")[0] == 1
    assert (tmp_path / "pool" / "manifest.jsonl").read_bytes() == before

    task = make_task_tree("cvc-300", tmp_path / "cvc-300")
    code, _, err = ingest_task(capsys, "cvc-300", task.root, tmp_path / "tasks", "--strict")
    assert code == 1 and str(task.corrupt) in err
    assert not (tmp_path / "tasks" / "cvc-300").exists()


def _frames_decoded(tmp_path: Path, n: int) -> bool:
    """Whether a scratch array exists and its first `n` frames hold pixels. The array file is created and
    then sized, so a poll between the two sees a header without data: not decoded yet."""
    for scratch in tmp_path.glob(".pool.scratch-*/images_r32.npy"):
        try:
            return bool(np.load(scratch, mmap_mode="r")[:n].reshape(n, -1).any(axis=1).all())
        except ValueError:
            return False
    return False


def test_killed_ingest_leaves_previous_pool_readable(tmp_path, capsys):
    pool_dir = tmp_path / "pool"
    assert ingest_pool(capsys, make_pool_tree("gastrovision", tmp_path / "gastrovision"), pool_dir)[0] == 0
    previous = open_pool(pool_dir)
    before = snapshot(pool_dir, previous.ids)

    # A download whose last file is a FIFO nobody writes to, like a file on a stalled network mount: the
    # ingest decodes every other file, then blocks on it, mid-ingest, until it is killed.
    big = tmp_path / "hyper-kvasir"
    frames = big / "unlabeled-images" / "images"
    write_image(frames / "a0000.jpg", (720, 576))
    for i in range(1, 40):
        shutil.copyfile(frames / "a0000.jpg", frames / f"a{i:04d}.jpg")
    os.mkfifo(frames / "zzzz-stalled.jpg")
    argv = [
        "ingest",
        "pool",
        "--source",
        "hyper-kvasir",
        big,
        "--into",
        pool_dir,
        "--resolutions",
        RES,
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "delbench", *map(str, argv), "--no-progress"],
        cwd=REPO,
        start_new_session=True,  # its own process group: the kill reaches the decoding workers too
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the ingest ended before it was killed: {proc.communicate()}"
            if _frames_decoded(tmp_path, 40):
                break  # the 40 readable frames are decoded; the worker on the FIFO is stuck
            assert time.monotonic() < deadline, "the ingest never got to decoding"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    after = open_pool(pool_dir)
    assert after.records == previous.records
    for sample_id, (_, image) in snapshot(pool_dir, previous.ids).items():
        assert np.array_equal(image, before[sample_id][1])
    assert list(tmp_path.glob(".pool.scratch-*")), (
        "the killed ingest's scratch folder is the evidence it was midway"
    )

    # The next ingest clears what the killed one left and completes.
    code, out, err = ingest_pool(
        capsys, make_pool_tree("kvasir-capsule", tmp_path / "kvasir-capsule"), pool_dir
    )
    assert code == 0, err
    assert "left by an interrupted ingest" in out
    assert not list(tmp_path.glob(".pool.scratch-*"))
    assert open_pool(pool_dir).size == previous.size + 4


def test_ingest_killed_between_the_swaps_renames_is_recovered(tmp_path, capsys):
    pool_dir = tmp_path / "pool"
    gastro = make_pool_tree("gastrovision", tmp_path / "gastrovision")
    assert ingest_pool(capsys, gastro, pool_dir)[0] == 0
    # What a kill between store.swap_into_place's two renames leaves: the old pool moved aside, none in place.
    os.replace(pool_dir, tmp_path / ".pool.old-1a2b3c4d")
    code, out, err = ingest_pool(
        capsys, make_pool_tree("kvasir-capsule", tmp_path / "kvasir-capsule"), pool_dir
    )
    assert code == 0, err
    assert "restored the previous store" in out
    assert set(gastro.ids) < set(open_pool(pool_dir).ids)


# ----------------------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("layout", [*TASK_NAMES, "cvc-clinicdb-png"])
def test_each_task_layout_is_ingested(tmp_path, capsys, layout):
    name = layout.removesuffix("-png")
    tree = make_task_tree(layout, tmp_path / layout)
    code, out, err = ingest_task(capsys, name, tree.root, tmp_path / "tasks")
    assert code == 0, err
    assert f"{tree.corrupt}: cannot decode" in out
    for res in (16, 32):
        task = open_task(tmp_path / "tasks" / name, res)
        assert task.resolution == res
        assert len(task.train.images) + len(task.test.images) == tree.n_readable
        assert len(task.test.images) >= 1
        masks = np.concatenate([task.train.masks, task.test.masks])
        assert set(np.unique(masks)) == {0, 1}
        assert masks.reshape(len(masks), -1).any(axis=1).all(), "every fixture mask has foreground"
    assert task.kind == ("instrument" if name == "kvasir-instrument" else "polyp")
    files = task.meta["files"]
    first = files["train"][0]
    image_path, mask_path = tree.root / first["image"], tree.root / first["mask"]
    assert first["image_sha256"] == hashlib.sha256(image_path.read_bytes()).hexdigest()
    assert np.array_equal(task.train.images[0], expected_image(image_path, 32))
    assert np.array_equal(task.train.masks[0], expected_mask(mask_path, 32))
    if tree.test_keys is not None:
        assert {f["key"] for f in files["test"]} == tree.test_keys
        assert task.meta["split_rule"].startswith("official")


def test_mask_threshold_and_nearest_resize(tmp_path, capsys):
    """A JPEG mask's grey fringe is cut at 127, and resizing never makes values other than 0 and 1."""
    root = tmp_path / "kvasir-seg"
    (root / "masks").mkdir(parents=True)
    for stem in ("a", "b"):
        write_image(root / "images" / f"{stem}.jpg", (64, 48))
        grey = np.zeros((48, 64), np.uint8)
        grey[:, 32:] = 200  # right half: foreground
        grey[:, 28:32] = 100  # a fringe below the threshold
        Image.fromarray(grey).save(root / "masks" / f"{stem}.jpg", quality=100)
    code, _, err = ingest_task(capsys, "kvasir-seg", root, tmp_path / "tasks")
    assert code == 0, err
    task = open_task(tmp_path / "tasks" / "kvasir-seg", 32)
    mask = task.train.masks[0]
    # The centre 48x48 crop spans columns 8..56 of the original; foreground from column 32 → crop column 24.
    assert set(np.unique(mask)) == {0, 1}
    # At 32 px the edge falls at column 16; the fringe (columns 13-15) stays background: cut at 127, not at 0.
    assert mask[:, :16].max() == 0 and mask[:, 16:].min() == 1


def test_hash_split_rule():
    keys = [str(i) for i in range(1, 61)]
    split = hash_split(keys)
    assert sum(s == "train" for s in split.values()) == 48  # CVC-300's 60 → 48 / 12
    assert hash_split(list(reversed(keys))) == split  # independent of listing order
    ordered = sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    assert [k for k in ordered if split[k] == "test"] == ordered[48:]
    for n, n_train in ((612, 490), (196, 157), (380, 304), (1000, 800), (3762, 3010), (2, 1)):
        assert list(hash_split([f"k{i}" for i in range(n)]).values()).count("train") == n_train


# ------------------------------------------------------------------------------------ bad input


def _without_labeled_images(root: Path) -> Path:
    (root / "labeled-images").mkdir(parents=True)
    (root / "labeled-images" / "image-labels.csv").write_text("x\n")
    return root


def _extra_mask(root: Path) -> Path:
    make_task_tree("kvasir-seg", root)
    return write_mask(root / "masks" / "orphan.jpg")


def _extra_image(root: Path) -> Path:
    make_task_tree("cvc-300", root)
    return write_image(root / "images" / "lonely.png")


def _bad_split_list(root: Path) -> Path:
    make_task_tree("kvasir-instrument", root)
    with open(root / "test.txt", "a") as f:
        f.write("not-an-image\n")
    return root / "test.txt"


def _kaggle_clinicdb(root: Path) -> Path:
    make_task_tree("cvc-clinicdb-png", root / "PNG")
    return root / "PNG"


@pytest.mark.parametrize(
    ("argv", "make", "message"),
    [
        (["pool", "--source", "gastrovision", "{dir}/nope"], None, "{dir}/nope: no such folder"),
        (["pool", "--source", "imagenet", "{dir}"], None, "invalid choice: 'imagenet'"),
        (["task", "kvasir-seg2", "{dir}"], None, "invalid choice: 'kvasir-seg2'"),
        (
            ["pool", "--source", "hyper-kvasir", "{dir}/hk"],
            _without_labeled_images,
            "no images found under {dir}/hk/labeled-images",
        ),
        (["pool", "--source", "hyper-kvasir", "{dir}"], None, "no Hyper-Kvasir layout here"),
        (
            ["task", "kvasir-seg", "{dir}/seg"],
            _extra_mask,
            "mask(s) without an image in {dir}/seg/images: {made}",
        ),
        (
            ["task", "cvc-300", "{dir}/c300"],
            _extra_image,
            "image(s) without a mask in {dir}/c300/masks: {made}",
        ),
        (
            ["task", "kvasir-instrument", "{dir}/ki"],
            _bad_split_list,
            "{made}:3: 'not-an-image' names no image",
        ),
        (["task", "cvc-clinicdb", "{dir}/clinic"], _kaggle_clinicdb, "this download holds PNG/: pass {made}"),
        (
            ["task", "cvc-colondb", "{dir}/colon"],
            lambda root: root.mkdir(),
            "{dir}/colon/images: no such folder",
        ),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, capsys, argv, make, message):
    made = make(Path(str(argv[-1]).format(dir=tmp_path))) if make else None
    argv = [a.format(dir=tmp_path) for a in argv]
    code, _, err = run(capsys, "ingest", *argv, "--into", tmp_path / "out", "--no-progress")
    assert code == (2 if "invalid choice" in message else 1)  # a usage error, or input that does not load
    assert message.format(dir=tmp_path, made=made) in err
    assert "Traceback" not in err


def test_refuses_to_add_to_what_it_did_not_write(tmp_path, capsys):
    tree = make_pool_tree("gastrovision", tmp_path / "gastrovision")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    code, _, err = ingest_pool(capsys, tree, tmp_path / "notes")
    assert code == 1 and "is not a DELBench pool" in err

    with PoolWriter(tmp_path / "synth", 1, [16, 32]) as writer:
        record = {
            "id": "synth-capsule/v0/f0",
            "source": "synth-capsule",
            "video": "v0",
            "frame": 0,
            "sha256": "0",
        }
        writer.put(0, record, {16: np.zeros((16, 16, 3), np.uint8), 32: np.zeros((32, 32, 3), np.uint8)})
        writer.commit()
    code, _, err = ingest_pool(capsys, tree, tmp_path / "synth")
    assert code == 1 and "synth-capsule" in err

    assert ingest_pool(capsys, tree, tmp_path / "pool")[0] == 0
    code, _, err = run(
        capsys,
        "ingest",
        "pool",
        "--source",
        "gastrovision",
        tree.root,
        "--into",
        tmp_path / "pool",
        "--resolutions",
        "64",
    )
    assert code == 1 and "holds resolutions [16, 32], not [64]" in err


def test_ingest_code_never_imports_torch():
    """Ingestion runs on a data machine with PIL and numpy only."""
    modules = "cli decoding destination imaging pool pool_sources resolutions task task_layouts tree verify"
    code = "import sys\n" + "".join(f"import evaluator.ingest.{m}\n" for m in modules.split())
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'torchvision')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
