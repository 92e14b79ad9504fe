"""Masked autoencoder (He et al., 2022) on timm's ViT blocks: the pretraining model of every tier.

`ViTEncoder` is the part that is kept: it is what the segmentation finetunes start from and what the
embedding baselines read. `MaskedAutoencoder` adds the light decoder used only during pretraining.
Images enter as float tensors [N, 3, H, W] already normalized (see `evaluator.augment.to_model_input`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from evaluator.compat import import_timm
from evaluator.tier import ModelConfig, Tier

import_timm()
from timm.layers import PatchEmbed  # noqa: E402
from timm.models.vision_transformer import Block  # noqa: E402

_layer_norm = functools.partial(nn.LayerNorm, eps=1e-6)  # MAE's norm; timm passes device/dtype through


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [1, (1 +) grid², dim], as in MAE."""
    pos = np.arange(grid, dtype=np.float64)
    gy, gx = np.meshgrid(pos, pos, indexing="ij")

    def encode(d: int, p: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", p.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([encode(dim // 2, gy), encode(dim // 2, gx)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTEncoder(nn.Module):
    """A ViT with a CLS token and fixed sin-cos positions; `forward_features` follows timm's interface."""

    def __init__(
        self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float
    ):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_pos_embed(embed_dim, self.grid), persistent=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=_layer_norm)
            for _ in range(depth)
        )
        self.norm = _layer_norm(embed_dim)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for name, module in self.named_modules():
            if not name.startswith("patch_embed"):
                _init_linear_and_norm(module)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x) + self.pos_embed[:, 1:, :]  # [N, L, D]

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] -> [N, 1 + L, D] (CLS first)."""
        return self._run_blocks(self._with_cls(self._tokens(x)))

    def forward_masked(
        self,
        x: torch.Tensor,
        mask_ratio: float,
        generator: torch.Generator | None,
        noise: torch.Tensor | None = None,
    ):
        """Encode only the kept patches. Returns latent [N, 1 + L_keep, D], mask [N, L] (1 = removed), ids_restore [N, L]."""
        tokens = self._tokens(x)
        kept, mask, ids_restore = random_masking(tokens, mask_ratio, generator, noise)
        return self._run_blocks(self._with_cls(kept)), mask, ids_restore


def random_masking(
    x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None, noise: torch.Tensor | None = None
):
    """Keep a random (1 - mask_ratio) share of the tokens of each sample. x: [N, L, D].

    `noise` [N, L] (uniform in [0, 1)) decides which tokens are kept; drawn from `generator` when not given.
    """
    n, length, dim = x.shape
    keep = int(length * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(n, length, device=x.device, generator=generator)  # [N, L]
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [N, keep, D]
    mask = torch.ones(n, length, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [N, L] in the original token order
    return kept, mask, ids_restore


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: [N, 3, H, W] -> [N, L, p*p*3]."""
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, channels: int = 3) -> torch.Tensor:
    """x: [N, L, p*p*3] -> [N, 3, H, W]."""
    n, length, _ = x.shape
    g = int(length**0.5)
    x = x.reshape(n, g, g, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * p, g * p)


class MaskedAutoencoder(nn.Module):
    def __init__(
        self,
        encoder: ViTEncoder,
        decoder_embed_dim: int,
        decoder_depth: int,
        decoder_num_heads: int,
        mlp_ratio: float,
        norm_pix_loss: bool,
    ):
        super().__init__()
        self.encoder = encoder
        self.norm_pix_loss = norm_pix_loss
        p, d = encoder.patch_size, encoder.embed_dim
        self.decoder_embed = nn.Linear(d, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer(
            "decoder_pos_embed", sincos_pos_embed(decoder_embed_dim, encoder.grid), persistent=False
        )
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=_layer_norm)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = _layer_norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, p * p * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        for name, module in self.named_modules():
            if not name.startswith("encoder"):
                _init_linear_and_norm(module)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ):
        return self.encoder.forward_masked(imgs, mask_ratio, generator, noise)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent: [N, 1 + L_keep, D] -> predicted pixels [N, L, p*p*3]."""
        x = self.decoder_embed(latent)
        n, length = ids_restore.shape
        masks = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:, :], masks], dim=1)  # [N, L, Dd] in shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error on the removed patches (normalized per patch when norm_pix_loss): [N]."""
        target = patchify(imgs, self.encoder.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)  # [N, L]
        return (per_patch * mask).sum(dim=1) / mask.sum(dim=1)

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ):
        """Returns (mean loss, per-sample loss [N], pred [N, L, p*p*3], mask [N, L]). `noise`: see `random_masking`."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator, noise)
        pred = self.forward_decoder(latent, ids_restore)
        per_sample = self.forward_loss(imgs, pred, mask)
        return per_sample.mean(), per_sample, pred, mask


def compile_blocks(model: nn.Module) -> int:
    """`torch.compile` every transformer block of `model` in place; returns how many.

    Regional compilation (PyTorch's recipe for repeated layers): the blocks of one width share one compiled
    graph, so the ViT-B/16 MAE compiles two small graphs (encoder and decoder block) in seconds where the
    whole model would take minutes, for nearly all of the gain: the blocks are the FLOPs, and inside them the
    fusion of norms, GELU, bias and residual adds. The masking and loss glue stays eager. `dynamic=False`:
    batch and sequence sizes are fixed in a run, so each graph is specialised to them. State-dict keys are
    unchanged (the modules are compiled in place), so checkpoints are interchangeable with eager runs.
    """
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.compile(dynamic=False)
    return len(blocks)


def build_encoder(model: ModelConfig, img_size: int) -> ViTEncoder:
    return ViTEncoder(
        img_size, model.patch_size, model.embed_dim, model.depth, model.num_heads, model.mlp_ratio
    )


def build_mae(tier: Tier) -> MaskedAutoencoder:
    m = tier.model
    return MaskedAutoencoder(
        build_encoder(m, tier.resolution),
        m.decoder_embed_dim,
        m.decoder_depth,
        m.decoder_num_heads,
        m.mlp_ratio,
        tier.pretrain.norm_pix_loss,
    )
