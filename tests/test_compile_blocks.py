"""`evaluator.mae.compile_blocks`, which the GPU tiers use (`compile: true`), checked on CPU where torch.compile
also runs (Inductor's C++ backend): the compiled model computes what the eager one does, and its state-dict
keys are unchanged, so checkpoints and encoders move freely between compiled and eager runs."""

from __future__ import annotations

import pytest
import torch

from evaluator.mae import Block, compile_blocks  # timm through evaluator.compat (CPU torchvision)
from evaluator.pretrain import build_initial_mae
from evaluator.tier import load_tier
from tests.conftest import MICRO_TIER


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from torch's own Inductor internals
def test_compiled_blocks_compute_as_eager_with_the_same_keys():
    tier = load_tier(MICRO_TIER)
    eager, compiled = build_initial_mae(tier, 0), build_initial_mae(tier, 0)
    blocks = sum(isinstance(m, Block) for m in compiled.modules())
    assert compile_blocks(compiled) == blocks == tier.model.depth + tier.model.decoder_depth
    assert list(compiled.state_dict()) == list(eager.state_dict())

    gen = torch.Generator().manual_seed(0)
    patches = (tier.resolution // tier.model.patch_size) ** 2
    x = torch.randn(4, 3, tier.resolution, tier.resolution, generator=gen)
    noise = torch.rand(4, patches, generator=gen)
    losses = []
    for model in (eager, compiled):
        loss, *_ = model(x, tier.pretrain.mask_ratio, noise=noise)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)

    compiled.load_state_dict(eager.state_dict())  # an eager checkpoint loads into the compiled model as is
    eager.load_state_dict(compiled.state_dict())
