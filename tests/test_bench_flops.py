"""The FLOPs per image behind every MFU figure (`bench/pretrain_throughput.mae_flops`, counted by formula)
against torch's own FLOP counter on the real model: a wrong count would make every MFU figure wrong."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench.pretrain_throughput import mae_flops
from evaluator.pretrain import build_initial_mae
from evaluator.tier import load_tier


@pytest.mark.slow
@pytest.mark.parametrize("tier_name", ["paper", "synth-tiny"])
def test_formula_matches_torchs_flop_counter(tier_name):
    tier = load_tier(tier_name)
    model = build_initial_mae(tier, 0)
    x = torch.randn(1, 3, tier.resolution, tier.resolution)
    noise = torch.rand(1, (tier.resolution // tier.model.patch_size) ** 2)
    # The math attention backend: its matmuls are counted (the counter has no formula for CPU flash attention).
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as forward:
            loss, *_ = model(x, tier.pretrain.mask_ratio, noise=noise)
        with FlopCounterMode(display=False) as backward:
            loss.backward()
    flops = mae_flops(tier)
    assert forward.get_total_flops() == flops["forward"]  # exactly: the same matmuls, attention included
    # Training = 3 x forward by convention; the real backward skips the image's own gradient, a little less.
    counted = forward.get_total_flops() + backward.get_total_flops()
    assert 0.95 * flops["train"] < counted <= flops["train"]
