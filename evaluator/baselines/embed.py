"""Pool features for the selection baselines: embeddings and per-sample MAE reconstruction losses.

The encoder is, by default, DELBench's own MAE pretrained on the whole pool under the tier (no pretrained
weights can be downloaded): `protocol.pretrain_encoder` with the all-IDs selection, the very pretraining
the 100 % baseline row uses, so it is cached once for both. `checkpoint=` takes any other encoder file.

Embedding: the mean of the encoder's final (layer-normed) patch tokens, CLS excluded. MAE's loss never
reads the CLS token, so it carries little; the patch tokens are what MAE trains and what the segmentation
head reads, and their average is the usual global MAE feature (MAE finetunes with global average pooling).

Thumbnails (for MedDEL's outlier test and the duplicate step of meddel and semdedup): each image box-averaged
to 32 x 32, `evaluator.baselines.descriptors`, which says why the embedding alone does not do.

Loss (for `hard`): the MAE objective per image (mean squared error on the masked patches, per-patch
normalised when the tier says so), averaged over `MASK_DRAWS` fixed masks drawn from seeded generators, so
the score measures the image, not one lucky mask. Needs the decoder, which the encoder file stores beside
the encoder; a file without one yields embeddings only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluator.baselines import descriptors
from evaluator.baselines.features import FeaturesError, FeatureSet, find_feature_set, write_feature_set
from evaluator.progress import ProgressFn
from evaluator.store import Pool, file_sha256
from evaluator.tier import Tier

MASK_DRAWS = 4
LOSS_BATCH = (
    256  # masks are drawn per batch, so the loss batch is fixed to keep losses independent of --batch-size
)
LOSS_SEED = 20240  # the mask generators' seed: part of the cache key
POOLING = "mean of final patch tokens (CLS excluded)"


def full_pool_selection(pool: Pool):
    """Every pool ID, as the 100 % row and the default encoder use it."""
    from evaluator.selection import ResolvedSelection, selection_hash

    ids = list(pool.ids)
    return ResolvedSelection(
        ids=ids,
        indices=np.arange(pool.size, dtype=np.int64),
        pool_size=pool.size,
        selection_hash=selection_hash(ids),
    )


def full_pool_encoder(pool: Pool, tier: Tier, *, seed: int, cache_dir: Path, device=None, progress=None):
    """The tier's full-pool pretraining (cached by the protocol): a `PretrainResult`."""
    from evaluator.protocol import pretrain_encoder

    return pretrain_encoder(
        pool=pool,
        selection=full_pool_selection(pool),
        tier=tier,
        seed=seed,
        cache_dir=Path(cache_dir),
        progress=progress,
        device=device,
    )


def feature_key(encoder_sha256: str, tier: Tier) -> str:
    settings = {
        "pooling": POOLING,
        "resolution": tier.resolution,
        "draws": MASK_DRAWS,
        "batch": LOSS_BATCH,
        "seed": LOSS_SEED,
        "descriptors": descriptors.DESCRIPTOR_VERSION,
    }
    return hashlib.sha256(f"{encoder_sha256}:{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()[
        :16
    ]


def load_mae(path: Path, tier: Tier):
    """(encoder, mae or None) from an encoder file; the MAE only when the file also holds the decoder."""
    import torch

    from evaluator.mae import build_mae
    from evaluator.protocol import load_encoder

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        encoder = load_encoder(path, tier)
    except ValueError:
        raise  # load_encoder's own message (another tier's encoder)
    except Exception as exc:  # unpickling, a wrong file, weights of another shape: all mean "not usable"
        raise FeaturesError(
            f"{path}: not an encoder for tier {tier.name} ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    decoder = saved.get("decoder") if isinstance(saved, dict) else None
    if decoder is None:
        return encoder, None
    mae = build_mae(tier)
    mae.load_state_dict({f"encoder.{k}": v for k, v in saved["encoder"].items()} | dict(decoder))
    return mae.encoder, mae


def embed_pool(
    pool: Pool,
    tier: Tier,
    *,
    checkpoint: Path | None = None,
    cache_dir: Path,
    seed: int | None = None,
    device: str | None = None,
    batch_size: int = 256,
    force: bool = False,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[FeatureSet, bool]:
    """Compute (or find cached) the pool's features; returns (feature set, whether it was cached)."""
    seed = tier.seed if seed is None else seed
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FeaturesError(f"{checkpoint}: no such encoder file")
        encoder_path, source = Path(checkpoint), "checkpoint"
    else:
        log(
            f"full-pool encoder for tier {tier.name}: pretraining on all {pool.size:,} images, or reusing the cache"
        )
        result = full_pool_encoder(
            pool, tier, seed=seed, cache_dir=cache_dir, device=device, progress=progress
        )
        encoder_path, source = result.encoder_path, "full-pool"
        log(
            f"encoder {'from cache' if result.cache_hit else f'pretrained in {result.seconds:.0f} s'}: {encoder_path}"
        )
    encoder_sha = file_sha256(encoder_path)
    key = feature_key(encoder_sha, tier)
    if not force:
        try:
            return find_feature_set(pool.path, key=key), True
        except FeaturesError:
            pass
    started = time.perf_counter()
    encoder, mae = load_mae(encoder_path, tier)
    if mae is None:
        log(f"{encoder_path} holds no decoder: embeddings only, so `hard` cannot run on them")
    embeddings, losses, dev = compute_features(
        pool, tier, encoder, mae, device=device, batch_size=batch_size, progress=progress
    )
    thumbs = descriptors.thumbnails(
        pool.images(tier.resolution), progress=progress and (lambda d, t: progress("thumbnails", d, t))
    )
    meta = {
        "encoder_source": source,
        "encoder_path": str(encoder_path),
        "encoder_sha256": encoder_sha,
        "tier": tier.name,
        "tier_hash": tier.hash,
        "pretrain_seed": seed,
        "pooling": POOLING,
        "resolution": tier.resolution,
        "loss": {
            "mask_ratio": tier.pretrain.mask_ratio,
            "draws": MASK_DRAWS,
            "batch": LOSS_BATCH,
            "seed": LOSS_SEED,
        }
        if mae
        else None,
        "thumbnail": descriptors.THUMBNAIL,
        "device": dev,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return write_feature_set(pool, key, meta, embeddings, losses, thumbs), False


def compute_features(
    pool: Pool,
    tier: Tier,
    encoder,
    mae,
    *,
    device: str | None,
    batch_size: int,
    progress: ProgressFn | None = None,
):
    """(embeddings float32 [N, D], losses float32 [N] or None, device name) over the whole pool."""
    import torch

    from evaluator.augment import to_model_input
    from evaluator.protocol import default_device

    dev = torch.device(device) if device else default_device()
    images = pool.images(tier.resolution)
    encoder = encoder.to(dev).eval()
    embeddings = np.empty((pool.size, encoder.embed_dim), dtype=np.float32)
    progress = progress or (lambda stage, done, total: None)
    with torch.inference_mode():
        for a in range(0, pool.size, batch_size):
            x = to_model_input(images[a : a + batch_size], dev, size=tier.resolution)
            tokens = encoder.forward_features(x)  # [B, 1 + L, D], CLS first
            embeddings[a : a + len(x)] = tokens[:, 1:].mean(1).float().cpu().numpy()
            progress("embed", min(a + batch_size, pool.size), pool.size)
        losses = None
        if mae is not None:
            mae = mae.to(dev).eval()
            losses = np.zeros(pool.size, dtype=np.float64)
            done = 0
            for draw in range(MASK_DRAWS):
                for a in range(0, pool.size, LOSS_BATCH):
                    g = torch.Generator(device=dev).manual_seed(LOSS_SEED + 1_000_003 * draw + a)
                    x = to_model_input(images[a : a + LOSS_BATCH], dev, size=tier.resolution)
                    _, per_sample, _, _ = mae(x, tier.pretrain.mask_ratio, g)
                    losses[a : a + len(x)] += per_sample.double().cpu().numpy() / MASK_DRAWS
                    done += len(x)
                    progress("MAE loss", done, MASK_DRAWS * pool.size)
            losses = losses.astype(np.float32)
    return embeddings, losses, str(dev)
