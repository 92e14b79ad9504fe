"""The batch feed (evaluator.feed) and the model-input conversion: same rows whichever path delivers them."""

from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np
import pytest
import torch

from evaluator.augment import MEAN, STD, to_model_input
from evaluator.feed import device_batches

CPU = torch.device("cpu")


@pytest.fixture
def store(tmp_path) -> np.ndarray:
    """A read-only memory-mapped uint8 store, as the pool's arrays are opened."""
    images = np.random.default_rng(0).integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "r8.npy", images)
    return np.load(tmp_path / "r8.npy", mmap_mode="r")


def feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("delbench-feed")]


def test_prefetched_batches_equal_inline_gathers(store):
    rng = np.random.default_rng(1)
    rows = [np.sort(rng.choice(50, size=n, replace=False)) for n in (16, 16, 3, 16, 1, 16, 16)]
    inline = [b.clone() for b in device_batches(store, rows, batch_size=16, device=CPU, prefetch=0)]
    # The prefetching path reuses its buffers: each batch is read before the next one is asked for.
    prefetched = [b.clone() for b in device_batches(store, rows, batch_size=16, device=CPU, prefetch=2)]
    assert len(inline) == len(prefetched) == len(rows)
    for r, a, b in zip(rows, inline, prefetched, strict=True):
        assert a.dtype == torch.uint8 and torch.equal(a, b)
        assert torch.equal(a, torch.from_numpy(np.array(store[r])))


def test_bad_rows_are_refused(store):
    with pytest.raises(IndexError):
        list(device_batches(store, [np.array([0, 50])], batch_size=4, device=CPU, prefetch=1))
    with pytest.raises(ValueError, match="buffers hold 4"):
        list(device_batches(store, [np.arange(5)], batch_size=4, device=CPU, prefetch=1))
    assert not feed_threads()


def test_stopping_early_stops_the_gathering_thread(store):
    batches = device_batches(store, (np.arange(4) for _ in range(1000)), batch_size=4, device=CPU, prefetch=2)
    with contextlib.closing(batches):
        next(batches)
        assert feed_threads()
    assert not feed_threads()


def test_model_input_from_read_only_rows_warns_nothing(store):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when handed a non-writable array
        x = to_model_input(store[10:20], CPU)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(np.array(store[10:20])).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.equal(x, expected)
