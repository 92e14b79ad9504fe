"""The MAE pretraining step as one CUDA graph: forward, backward and AdamW replayed with a single launch.

At the paper's batch of 16 a step's arithmetic (16 x 58.7 GFLOP) takes about 1.2 ms at an H100's measured
peak, yet the first H100 run measured 32 ms a step (docs/performance.md): the host, launching kernel after
kernel from Python, sets the pace. Replaying a captured graph launches the whole step at once. This follows
PyTorch's whole-network capture recipe:

- static inputs: the uint8 batch, the crop draws and the masking noise are copied or drawn into tensors the
  graph reads (the draws come from the step's seeded generator, in the protocol's order, outside the graph);
- the learning rate is a tensor per parameter group (fused AdamW with `capturable=True` reads it on the
  device), updated in place each step;
- a few warm-up steps on a side stream first (lazy initialisations must not happen during capture); they
  train, so the model and optimizer state are saved before and put back afterwards, in place (the graph holds
  the tensors' addresses): the run continues from exactly the state it had;
- autocast without its weight cache (a cache entry made during capture must not outlive it);
- capture errors checked in the capturing thread only: the batch feed's thread goes on meanwhile.

Opt-in per tier (`cuda_graph`); if capture fails, the state is restored and the eager step is used.
"""

from __future__ import annotations

import logging

import torch

from evaluator.mae import MaskedAutoencoder
from evaluator.pretrain import mae_update, step_randoms
from evaluator.tier import Tier

log = logging.getLogger("delbench.pretrain")
WARMUP_STEPS = 3
# How each capture ended, as the first words of its log line (bench/ reads them to label its figures).
CAPTURED = "CUDA graph captured"
CAPTURE_FAILED = "CUDA graph capture of the MAE step failed"


def capturable_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make `optimizer` capturable in place: learning rates as device tensors (set_lr fills them)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


class GraphedMAEStep:
    """Callable like `mae_step(batch, generator) -> loss`; captures itself on first use."""

    def __init__(
        self, model: MaskedAutoencoder, optimizer: torch.optim.Optimizer, tier: Tier, device: torch.device
    ):
        self.model, self.optimizer, self.tier, self.device = model, optimizer, tier, device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.patches = model.encoder.grid**2
        self.bf16 = tier.precision == "bf16"

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        crops, noise = step_randoms(len(batch), self.patches, self.device, generator)
        if self.graph is None and not self.failed:
            self._capture(batch, crops, noise)
        if self.graph is None:  # capture failed: the eager step (same inputs, same draws)
            return mae_update(self.model, self.optimizer, batch, crops, noise, self.tier, self._autocast())
        self.static_batch.copy_(batch, non_blocking=True)
        self.static_crops.copy_(crops)
        self.static_noise.copy_(noise)
        self.graph.replay()
        return self.static_loss.clone()

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False)

    def _update(self) -> torch.Tensor:
        return mae_update(
            self.model,
            self.optimizer,
            self.static_batch,
            self.static_crops,
            self.static_noise,
            self.tier,
            self._autocast(),
        )

    def _capture(self, batch: torch.Tensor, crops: torch.Tensor, noise: torch.Tensor) -> None:
        self.static_batch, self.static_crops, self.static_noise = batch.clone(), crops.clone(), noise.clone()
        saved = self._save_state()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self._update()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the batch feed's thread keeps waiting on its copy events while the step is captured
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.static_loss = self._update()
            self.graph = graph
            log.info("%s: the MAE step at batch %d replays as one graph", CAPTURED, len(batch))
        except Exception:  # noqa: BLE001 (any capture failure: fall back, never stop the run)
            log.warning("%s; training eagerly", CAPTURE_FAILED, exc_info=True)
            self.failed = True
            self.graph = None
        finally:
            torch.cuda.synchronize()  # the warm-up's side stream included, even after an error
            self._restore_state(saved)
            torch.cuda.synchronize()

    def _save_state(self) -> tuple[dict, dict]:
        params = {p: p.detach().clone() for p in self.model.parameters()}
        opt = {
            p: {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
            for p, s in self.optimizer.state.items()
        }
        return params, opt

    def _restore_state(self, saved: tuple[dict, dict]) -> None:
        """Back to the state before warm-up, in place: parameters, and the optimizer's moments and step
        counts (zeros where the warm-up created them: AdamW's fresh state)."""
        params, opt = saved
        with torch.no_grad():
            for p, value in params.items():
                p.copy_(value)
            for p, state in self.optimizer.state.items():
                for k, v in state.items():
                    if isinstance(v, torch.Tensor):
                        v.copy_(opt[p][k]) if p in opt and k in opt[p] else v.zero_()
