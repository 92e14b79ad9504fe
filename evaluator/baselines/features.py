"""The on-disk cache of a pool's features (embeddings and MAE losses), kept beside the pool.

    POOL/embeddings/<key>.npy        float32 [N, D]: one embedding per pool image, in manifest order
    POOL/embeddings/<key>.loss.npy   float32 [N]: per-image MAE reconstruction loss (when a decoder was known)
    POOL/embeddings/<key>.thumbs.npy float16 [N, 32, 32, 3]: each image's thumbnail (baselines.descriptors)
    POOL/embeddings/<key>.json       what produced them: encoder file and hash, tier, pooling, pool IDs hash

`key` hashes the encoder file's bytes with the settings that shape the features, so a new encoder or
setting never reads a stale cache; the pool IDs hash in the JSON catches a pool rebuilt at the same path.
Files are written under temporary names and renamed into place, the JSON last: a cache is complete exactly
when its JSON exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.baselines.methods import Features
from evaluator.selection import selection_hash
from evaluator.store import Pool, write_atomic, write_json_atomic

FEATURES_FORMAT = "delbench-features/2"  # 2: with thumbnails


class FeaturesError(ValueError):
    """Features missing, ambiguous or stale for a pool; the message says which command makes them."""


@dataclass(frozen=True)
class FeatureSet:
    key: str
    meta: dict
    embeddings_path: Path
    losses_path: Path | None
    thumbnails_path: Path | None

    def load(self, pool: Pool) -> Features:
        if self.meta.get("ids_sha256") != selection_hash(pool.ids):
            raise FeaturesError(
                f"{self.embeddings_path}: computed for another pool (its IDs differ); rerun `delbench embed --pool {pool.path}`"
            )
        embeddings = np.load(self.embeddings_path, mmap_mode="r")
        losses = np.load(self.losses_path) if self.losses_path is not None else None
        thumbnails = np.load(self.thumbnails_path) if self.thumbnails_path is not None else None
        return Features(
            size=pool.size, embeddings=np.asarray(embeddings), losses=losses, thumbnails=thumbnails
        )


def features_dir(pool_path: str | Path) -> Path:
    return Path(pool_path) / "embeddings"


def list_feature_sets(pool_path: str | Path) -> list[FeatureSet]:
    folder = features_dir(pool_path)
    sets = []
    for meta_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FEATURES_FORMAT:
            continue
        key = meta_path.stem
        losses = folder / f"{key}.loss.npy"
        thumbs = folder / f"{key}.thumbs.npy"
        sets.append(
            FeatureSet(
                key,
                meta,
                folder / f"{key}.npy",
                losses if losses.exists() else None,
                thumbs if thumbs.exists() else None,
            )
        )
    return sets


def find_feature_set(
    pool_path: str | Path,
    *,
    key: str | None = None,
    tier_hash: str | None = None,
    pretrain_seed: int | None = None,
) -> FeatureSet:
    """The feature set named by `key`, else the full-pool encoder's for `tier_hash`, else the only one.
    Where `delbench baselines --seeds` left one set per seed, `pretrain_seed` picks among them (callers pass
    the tier's seed, which is what a plain `delbench embed` uses)."""
    sets = list_feature_sets(pool_path)
    hint = f"run `delbench embed --pool {pool_path} --tier TIER` first"
    if key is not None:
        matches = [s for s in sets if s.key == key or s.embeddings_path.resolve() == Path(key).resolve()]
        if not matches:
            raise FeaturesError(f"no features {key!r} in {features_dir(pool_path)}; {hint}")
        return matches[0]
    if tier_hash is not None:
        sets = [
            s
            for s in sets
            if s.meta.get("tier_hash") == tier_hash and s.meta.get("encoder_source") == "full-pool"
        ]
    if not sets:
        which = "for that tier's full-pool encoder " if tier_hash else ""
        raise FeaturesError(f"no embeddings {which}in {features_dir(pool_path)}; {hint}")
    if len(sets) > 1 and pretrain_seed is not None:
        sets = [s for s in sets if s.meta.get("pretrain_seed") == pretrain_seed] or sets
    if len(sets) > 1:
        names = ", ".join(
            f"{s.key} ({s.meta.get('tier')}, {s.meta.get('encoder_source')}, pretrain seed {s.meta.get('pretrain_seed')})"
            for s in sets
        )
        pick = "--embeddings KEY" if tier_hash else "--tier or --embeddings KEY"
        raise FeaturesError(
            f"several feature sets in {features_dir(pool_path)}: {names}; pick one with {pick}"
        )
    return sets[0]


def write_feature_set(
    pool: Pool,
    key: str,
    meta: dict,
    embeddings: np.ndarray,
    losses: np.ndarray | None,
    thumbnails: np.ndarray | None = None,
) -> FeatureSet:
    folder = features_dir(pool.path)
    folder.mkdir(parents=True, exist_ok=True)
    if (
        len(embeddings) != pool.size
        or (thumbnails is not None and len(thumbnails) != pool.size)
        or (losses is not None and len(losses) != pool.size)
    ):
        raise ValueError("features must have one row per pool sample")
    meta = {
        "format": FEATURES_FORMAT,
        **meta,
        "n": pool.size,
        "dim": int(embeddings.shape[1]),
        "ids_sha256": selection_hash(pool.ids),
        "losses": losses is not None,
        "thumbnails": thumbnails is not None,
    }
    _atomic_save(folder / f"{key}.npy", np.ascontiguousarray(embeddings, dtype=np.float32))
    if losses is not None:
        _atomic_save(folder / f"{key}.loss.npy", np.ascontiguousarray(losses, dtype=np.float32))
    if thumbnails is not None:
        _atomic_save(folder / f"{key}.thumbs.npy", np.ascontiguousarray(thumbnails, dtype=np.float16))
    write_json_atomic(folder / f"{key}.json", meta)
    return find_feature_set(pool.path, key=key)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda f: np.save(f, array))
