"""The captured pretraining step (evaluator.cuda_graph): it must train exactly as the eager step does.

The state put back after the capture's warm-up is checked on CPU; the capture itself needs CUDA (skipped
without it): there the graphed and the eager steps must give the same losses and weights, and compiled
blocks must not change them beyond bf16/fp32 rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from evaluator.pretrain import build_initial_mae, build_optimizer, mae_step, param_groups, pretrain, set_lr
from evaluator.tier import Tier, load_tier
from tests.conftest import MICRO_TIER

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def micro(**top) -> Tier:
    raw = copy.deepcopy(load_tier(MICRO_TIER).to_dict())
    raw.update(top)
    return Tier.from_dict(raw)


def batch_of(n: int, res: int, device) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, res, res, 3), dtype=np.uint8)).to(
        device
    )


def test_warm_up_state_is_put_back_in_place():
    from evaluator.cuda_graph import GraphedMAEStep

    tier = micro()
    model = build_initial_mae(tier, 0)
    optimizer = build_optimizer(param_groups(model, 0.05), 1e-3, (0.9, 0.95), torch.device("cpu"))
    step = GraphedMAEStep.__new__(GraphedMAEStep)  # only its state handling, which needs no GPU
    step.model, step.optimizer = model, optimizer
    batch = batch_of(8, 32, "cpu")
    mae_step(model, optimizer, batch, tier, torch.Generator().manual_seed(0))  # a state to return to
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    params = [p for p in model.parameters()]
    saved = step._save_state()
    for s in range(3):  # the warm-up trains
        mae_step(model, optimizer, batch, tier, torch.Generator().manual_seed(s + 1))
    step._restore_state(saved)
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))  # in place: same tensors
    after = (model.state_dict(), optimizer.state_dict())
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    for p, state in before[1]["state"].items():
        assert all(torch.equal(v, after[1]["state"][p][k]) for k, v in state.items())


def test_fresh_optimizer_state_goes_back_to_zeros():
    from evaluator.cuda_graph import GraphedMAEStep

    tier = micro()
    model = build_initial_mae(tier, 0)
    optimizer = build_optimizer(param_groups(model, 0.05), 1e-3, (0.9, 0.95), torch.device("cpu"))
    step = GraphedMAEStep.__new__(GraphedMAEStep)
    step.model, step.optimizer = model, optimizer
    saved = step._save_state()  # no optimizer state yet
    mae_step(model, optimizer, batch_of(8, 32, "cpu"), tier, torch.Generator().manual_seed(0))
    step._restore_state(saved)
    for state in optimizer.state.values():
        assert all(not v.any() for v in state.values() if isinstance(v, torch.Tensor))


def run_steps(tier: Tier, graphed: bool, steps: int = 6) -> tuple[list[float], dict]:
    from evaluator.cuda_graph import GraphedMAEStep, capturable_optimizer

    device = torch.device("cuda")
    model = build_initial_mae(tier, 0).to(device)
    optimizer = build_optimizer(param_groups(model, 0.05), 1e-3, (0.9, 0.95), device)
    step = lambda b, g: mae_step(model, optimizer, b, tier, g)  # noqa: E731
    if graphed:
        capturable_optimizer(optimizer, device)
        graph = GraphedMAEStep(model, optimizer, tier, device)
        step = lambda b, g: graph(b, generator=g)  # noqa: E731
    losses = []
    for s in range(steps):
        set_lr(optimizer, 1e-3 * (s + 1) / steps)
        losses.append(step(batch_of(8, 32, device), torch.Generator(device=device).manual_seed(s)))
    if graphed:
        assert graph.graph is not None and not graph.failed
    return [float(x) for x in losses], {k: v.detach().cpu() for k, v in model.state_dict().items()}


@cuda
@pytest.mark.gpu
def test_graphed_step_trains_as_the_eager_step():
    tier = micro()  # fp32
    eager_losses, eager_state = run_steps(tier, graphed=False)
    graph_losses, graph_state = run_steps(tier, graphed=True)
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-4)
    assert all(torch.allclose(graph_state[k], eager_state[k], atol=1e-5) for k in eager_state)


@cuda
@pytest.mark.gpu
def test_pretrain_with_bf16_compile_and_graph_runs(small_pool, tmp_path):
    from evaluator.store import open_pool

    images = np.asarray(open_pool(small_pool).images(32))
    raw = copy.deepcopy(micro(precision="bf16", compile=True, cuda_graph=True).to_dict())
    raw["pretrain"].update(samples_seen=32 * 12, checkpoint_every=5)
    _, curve = pretrain(images=images, indices=np.arange(len(images)), tier=Tier.from_dict(raw), seed=0,
                        device=torch.device("cuda"), work_dir=tmp_path, log_every=4)  # fmt: skip
    assert len(curve) == 3 and all(np.isfinite(loss) for _, loss in curve)
