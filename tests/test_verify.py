"""`delbench verify` on ingested fixture pools and tasks, intact and damaged."""

from __future__ import annotations

import shutil

import numpy as np

from tests.ingest_fixtures import ingest_pool, ingest_task, make_pool_tree, make_task_tree, run


def _pool(tmp_path, capsys):
    trees = [make_pool_tree(s, tmp_path / s) for s in ("hyper-kvasir", "gastrovision")]
    for tree in trees:
        assert ingest_pool(capsys, tree, tmp_path / "pool")[0] == 0
    return trees


def test_intact_pool_verifies(tmp_path, capsys):
    _pool(tmp_path, capsys)
    code, out, _ = run(capsys, "verify", tmp_path / "pool", "--no-progress")
    assert code == 0
    assert "2 array file(s) loaded, 9 source file(s) re-hashed" in out and out.rstrip().endswith("OK")


def test_pool_verify_names_missing_truncated_and_modified_files(tmp_path, capsys):
    hyper, gastro = _pool(tmp_path, capsys)
    deleted = hyper.root / "unlabeled-images/images/00a1b2c3-d4e5.jpg"
    truncated = gastro.root / "Colon polyps/1a2b3c4d.jpg"
    modified = gastro.root / "Accessory tools/0b6c2a3e.jpg"
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(modified.read_bytes())
    data[-3] ^= 0xFF  # same size, different content
    modified.write_bytes(bytes(data))

    code, out, _ = run(capsys, "verify", tmp_path / "pool", "--no-progress")
    assert code == 1
    assert "3 problem(s)" in out
    assert f"{deleted}: missing (sample hyper-kvasir/unlabeled-images/images/00a1b2c3-d4e5)" in out
    assert f"{truncated}: truncated: 100 of " in out
    assert f"{modified}: modified: sha256 differs" in out


def test_pool_verify_follows_a_moved_download(tmp_path, capsys):
    _, gastro = _pool(tmp_path, capsys)
    moved = tmp_path / "moved"
    shutil.move(gastro.root, moved)
    code, out, _ = run(capsys, "verify", tmp_path / "pool", "--no-progress")
    assert code == 1 and f"{gastro.root}: the gastrovision download is gone" in out
    code, out, _ = run(
        capsys, "verify", tmp_path / "pool", "--root", f"gastrovision={moved}", "--no-progress"
    )
    assert code == 0, out


def test_pool_verify_finds_a_truncated_array(tmp_path, capsys):
    _pool(tmp_path, capsys)
    array = tmp_path / "pool" / "arrays" / "r32.npy"
    array.write_bytes(array.read_bytes()[:-500])
    code, out, _ = run(capsys, "verify", tmp_path / "pool", "--no-progress")
    assert code == 1 and f"{array}: unreadable" in out


def test_tasks_verify(tmp_path, capsys):
    trees = {name: make_task_tree(name, tmp_path / name) for name in ("kvasir-instrument", "polypgen")}
    for name, tree in trees.items():
        assert ingest_task(capsys, name, tree.root, tmp_path / "tasks")[0] == 0
    code, out, _ = run(capsys, "verify", tmp_path / "tasks", "--no-progress")
    assert code == 0, out
    assert "6 of the eight tasks not ingested yet" in out
    # 2 tasks x 2 resolutions x 2 splits x (images, masks); (6 + 8) samples x (image, mask)
    assert "16 array file(s) loaded, 28 source file(s) re-hashed" in out

    masks_file = tmp_path / "tasks" / "polypgen" / "r16" / "test_masks.npy"
    masks = np.load(masks_file)
    masks[0, 0, 0] = 255
    np.save(masks_file, masks)
    test_key = sorted(trees["kvasir-instrument"].test_keys)[0]
    removed = trees["kvasir-instrument"].root / "masks" / f"{test_key}.png"
    removed.unlink()
    code, out, _ = run(capsys, "verify", tmp_path / "tasks", "--no-progress")
    assert code == 1
    assert f"{masks_file}: masks are not binary (values up to 255)" in out
    assert f"{removed}: missing (mask of kvasir-instrument test sample {test_key})" in out

    code, out, _ = run(
        capsys, "verify", tmp_path / "tasks" / "kvasir-instrument", "--no-progress"
    )  # one task
    assert code == 1 and str(removed) in out and "polypgen" not in out


def test_verify_refuses_what_is_not_a_store(tmp_path, capsys):
    code, _, err = run(capsys, "verify", tmp_path)
    assert code == 1 and f"{tmp_path}: neither a pool" in err
    code, _, err = run(capsys, "verify", tmp_path / "absent")
    assert code == 1 and "no such folder" in err


def test_pool_verify_finds_a_changed_pixel_by_the_recorded_content_hash(tmp_path, capsys):
    _pool(tmp_path, capsys)
    array = tmp_path / "pool" / "arrays" / "r32.npy"
    data = bytearray(array.read_bytes())
    data[-1] ^= 0x01  # one grey level in the last pixel: the same size, the file still loads
    array.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", tmp_path / "pool", "--no-progress")
    assert code == 1 and "but pool.json records" in out and "changed or damaged since it was written" in out
