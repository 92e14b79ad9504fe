"""The selection baselines on a CUDA device give the CPU's selections (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluator.baselines import Features, Options, select
from tests.test_baselines_select import planted_pool

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("method", ["meddel", "semdedup", "hard", "prototype"])
def test_cuda_matches_cpu(method):
    x, _, _ = planted_pool()
    losses = np.random.default_rng(1).random(len(x))
    features = Features(len(x), x, losses)
    # Same k-means backend on both (torch), so only the device differs; float sums may reorder, so the
    # selections must agree on all but a sliver.
    cpu = select(method, features, Options(ratio=0.3, k=12, kmeans_backend="torch"))
    cuda = select(method, features, Options(ratio=0.3, k=12, kmeans_backend="torch", device="cuda"))
    overlap = len(np.intersect1d(cpu.indices, cuda.indices)) / cpu.n
    assert overlap >= 0.98, overlap
    assert abs(cuda.ratio - 0.3) <= 0.01
