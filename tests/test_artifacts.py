"""The artifact store on a shared folder and on a real S3-compatible server process (moto's standalone
server on 127.0.0.1): whole-file puts and gets, keys kept inside the store, and an encoder pretrained on
one "host" found by another through the store instead of being pretrained again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from evaluator.artifacts import ArtifactStore, open_store
from evaluator.protocol import encoder_key, pretrain_encoder
from evaluator.selection import load_selection
from evaluator.store import file_sha256, open_pool
from evaluator.tier import load_tier
from tests.conftest import MICRO_TIER
from tests.server.conftest import free_port


@pytest.fixture(scope="module")
def s3_url():
    """A moto S3 server process and a bucket in it; yields (store URL, endpoint)."""
    server = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(server).exists():
        pytest.skip("moto's server is not installed (the dev extra)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "moto_server did not start"
                time.sleep(0.1)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        httpx.put(f"{endpoint}/delbench-test", timeout=10).raise_for_status()  # create the bucket
        yield "s3://delbench-test/artifacts", endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "folder":
        return open_store(str(tmp_path / "shared"))
    url, endpoint = request.getfixturevalue("s3_url")
    return open_store(f"{url}/{tmp_path.name}", endpoint)


def test_put_get_has(store, tmp_path):
    local = tmp_path / "a.bin"
    local.write_bytes(b"x" * 100_000)
    assert not store.has("encoders/k1/encoder.pt")
    store.put(local, "encoders/k1/encoder.pt")
    assert store.has("encoders/k1/encoder.pt")
    back = store.get("encoders/k1/encoder.pt", tmp_path / "other" / "encoder.pt")
    assert back.read_bytes() == local.read_bytes()
    assert [p.name for p in back.parent.iterdir()] == ["encoder.pt"]  # no temporary file left
    for bad in ("../outside", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="relative path"):
            store.has(bad)


def test_an_encoder_pretrained_on_one_host_is_fetched_by_another(store, tmp_path, small_pool, small_pool_ids):
    pool = open_pool(small_pool)
    selection = load_selection("\n".join(small_pool_ids[::10]).encode(), pool.index_of)
    tier = load_tier(MICRO_TIER)
    first = pretrain_encoder(pool=pool, selection=selection, tier=tier, seed=0, cache_dir=tmp_path / "host-a",
                             device="cpu", store=store)  # fmt: skip
    assert not first.cache_hit and store.has(encoder_key(selection.selection_hash, tier, 0))
    second = pretrain_encoder(pool=pool, selection=selection, tier=tier, seed=0, cache_dir=tmp_path / "host-b",
                              device="cpu", store=store)  # fmt: skip
    assert second.cache_hit  # found in the store: not pretrained again
    assert second.encoder_path != first.encoder_path
    assert file_sha256(second.encoder_path) == file_sha256(first.encoder_path)
    assert second.loss_curve == first.loss_curve
