"""The fixed evaluation protocol, stage by stage: pretrain -> eight finetunes -> results.

The worker calls the stages separately (the finetunes run as parallel tasks); `evaluate` chains them for the
CLI. Each stage is a pure function of its inputs and seed, so both paths give the same numbers.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluator.artifacts import ArtifactStore
from evaluator.distributed import SINGLE, Ranks, RanksFailed, launch_pretrain
from evaluator.finetune import finetune
from evaluator.mae import ViTEncoder, build_encoder
from evaluator.metrics import normdel
from evaluator.pretrain import build_initial_mae, pretrain
from evaluator.progress import ProgressFn
from evaluator.selection import ResolvedSelection
from evaluator.store import Pool, file_sha256, list_tasks, open_pool, open_task, save_torch_atomic
from evaluator.tier import Tier
from evaluator.version import code_version, library_versions

ENCODER_FILE = "encoder.pt"
log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class PretrainResult:
    encoder_path: Path
    cache_hit: bool
    loss_curve: list[tuple[int, float]]
    seconds: float


def encoder_cache_key(selection_hash: str, tier: Tier, seed: int) -> str:
    return hashlib.sha256(f"{selection_hash}:{tier.hash}:{seed}".encode()).hexdigest()[:32]


def encoder_key(selection_hash: str, tier: Tier, seed: int) -> str:
    """Where the encoder lives, relative to a cache folder or an artifact store."""
    return f"encoders/{encoder_cache_key(selection_hash, tier, seed)}/{ENCODER_FILE}"


def fetch_encoder(store: ArtifactStore, key: str, cache_dir: Path, tier: Tier) -> Path | None:
    """The store's encoder at `key`, copied into `cache_dir` and checked against its digest; None where the
    store has none (or one that does not verify)."""
    if not store.has(key):
        return None
    local = Path(cache_dir) / key
    store.get(key + ".sha256", _digest_path(local))
    store.get(key, local)
    return local if _cached_encoder(local, tier) is not None else None


def pretrain_encoder(
    *,
    pool: Pool,
    selection: ResolvedSelection,
    tier: Tier,
    seed: int,
    cache_dir: Path,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
    ranks: Ranks = SINGLE,
    store: ArtifactStore | None = None,
    processes: int = 1,
    devices: str | None = None,
) -> PretrainResult:
    """Pretrain on the selection, or reuse the encoder cached for (selection hash, tier hash, seed).

    An interrupted run resumes from the checkpoint in the entry's work folder. Under several `ranks` (one
    data-parallel pretraining, evaluator.distributed) the cache folder is the ranks' common one: the main
    rank writes checkpoints and the encoder, and every rank returns once the encoder is there. With an
    artifact `store`, an encoder another host pretrained is fetched rather than pretrained again, and a new
    one is put there for the others. `processes` > 1 (from a single process, e.g. a worker) launches that
    many local ranks with torchrun (`launch_pretrain`; `devices`: their CUDA_VISIBLE_DEVICES) instead.
    """
    started = time.perf_counter()
    entry = Path(cache_dir) / "encoders" / encoder_cache_key(selection.selection_hash, tier, seed)
    encoder_path = entry / ENCODER_FILE
    saved = _cached_encoder(encoder_path, tier)
    key = encoder_key(selection.selection_hash, tier, seed)
    if saved is None and store is not None and fetch_encoder(store, key, cache_dir, tier) is not None:
        saved = _cached_encoder(encoder_path, tier)
    if saved is not None:
        if progress:
            progress("pretrain", tier.pretrain.steps, tier.pretrain.steps)
        return PretrainResult(
            encoder_path, True, [tuple(p) for p in saved["loss_curve"]], time.perf_counter() - started
        )
    if processes > 1:
        launch_pretrain(pool_dir=pool.path, ids=[pool.ids[i] for i in selection.indices],
                        tier_config=tier.to_dict(), seed=seed, cache_dir=Path(cache_dir), processes=processes,
                        devices=devices, progress=progress)  # fmt: skip
        saved = _cached_encoder(encoder_path, tier)
        if saved is None:
            raise RanksFailed(f"the {processes} ranks ended without writing {encoder_path}")
        _publish(store, encoder_path, key)
        return PretrainResult(
            encoder_path, False, [tuple(p) for p in saved["loss_curve"]], time.perf_counter() - started
        )
    work = entry / "work"
    work.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device else default_device()
    model, curve = pretrain(
        images=pool.images(tier.resolution),
        indices=selection.indices,
        tier=tier,
        seed=seed,
        device=dev,
        work_dir=work,
        progress=progress,
        ranks=ranks,
    )
    if not ranks.is_main:
        ranks.barrier()  # the main rank is writing the encoder
        return PretrainResult(encoder_path, False, curve, time.perf_counter() - started)
    state = {
        "encoder": {k: v.cpu() for k, v in model.encoder.state_dict().items()},
        # The decoder too, so the full-pool model can score per-image MAE losses (the `hard` baseline).
        "decoder": {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("encoder.")},
        "tier_hash": tier.hash,
        "selection_hash": selection.selection_hash,
        "seed": seed,
        "loss_curve": curve,
    }
    save_torch_atomic(state, encoder_path)
    _digest_path(encoder_path).write_text(file_sha256(encoder_path) + "\n")  # a digest names a whole file
    _publish(store, encoder_path, key)
    shutil.rmtree(work, ignore_errors=True)
    ranks.barrier()
    return PretrainResult(encoder_path, False, curve, time.perf_counter() - started)


def _publish(store: ArtifactStore | None, encoder_path: Path, key: str) -> None:
    if store is not None:  # the digest first: an encoder in the store always has its digest beside it
        store.put(_digest_path(encoder_path), key + ".sha256")
        store.put(encoder_path, key)


def _digest_path(encoder_path: Path) -> Path:
    return encoder_path.with_name(encoder_path.name + ".sha256")


def _cached_encoder(encoder_path: Path, tier: Tier) -> dict | None:
    """The cached encoder's saved state, or None where there is none or it is unusable: its bytes differ from
    the digest written with it, or it does not load. An unusable entry is deleted, so the stage pretrains
    again instead of failing every submission of that selection, tier and seed."""
    if not encoder_path.exists():
        return None
    digest_path = _digest_path(encoder_path)
    why = None
    if digest_path.exists() and digest_path.read_text().strip() != file_sha256(encoder_path):
        why = "its sha256 differs from the one written with it"
    else:
        try:
            saved = torch.load(encoder_path, map_location="cpu", weights_only=False)
            if saved.get("tier_hash") == tier.hash and "encoder" in saved and "loss_curve" in saved:
                return saved
            why = "it is not an encoder of this tier"
        except Exception as exc:  # truncated, or not a torch file: the same outcome
            why = f"it does not load ({type(exc).__name__}: {str(exc)[:200]})"
    log.warning("cached encoder %s discarded: %s; pretraining again", encoder_path, why)
    encoder_path.unlink(missing_ok=True)
    digest_path.unlink(missing_ok=True)
    return None


def load_encoder(encoder_path: Path | None, tier: Tier, seed: int = 0) -> ViTEncoder:
    """The encoder saved at `encoder_path`, or (None) the seeded random initialisation pretraining starts from."""
    if encoder_path is None:
        return build_initial_mae(tier, seed).encoder
    saved = torch.load(encoder_path, map_location="cpu", weights_only=False)
    if saved.get("tier_hash") not in (None, tier.hash):
        raise ValueError(
            f"{encoder_path}: encoder was pretrained under another tier ({saved['tier_hash'][:12]})"
        )
    encoder = build_encoder(tier.model, tier.resolution)
    encoder.load_state_dict(saved["encoder"])
    return encoder


def finetune_task(
    *,
    encoder_path: Path | None,
    task_dir: Path,
    tier: Tier,
    seed: int,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Finetune on one downstream task and score it: {"name", "miou", "confusion", "seconds"}."""
    started = time.perf_counter()
    dev = torch.device(device) if device else default_device()
    task = open_task(task_dir, tier.resolution)
    encoder = load_encoder(encoder_path, tier, seed)
    result = finetune(encoder=encoder, task=task, tier=tier, seed=seed, device=dev, progress=progress)
    return {"name": task.name, **result, "seconds": time.perf_counter() - started}


def assemble_results(
    *,
    selection: ResolvedSelection | None,
    pool_size: int,
    tier: Tier,
    seed: int,
    task_results: dict[str, dict],
    timings: dict[str, float],
    loss_curve: list[tuple[int, float]] | None = None,
) -> dict:
    """The results document. Without pretraining nothing is retained, and NormDEL (defined for R in (0, 1]) is null."""
    n = selection.n if selection else 0
    ratio = n / pool_size
    datasets = {
        name: {"miou": r["miou"], "normdel": normdel(r["miou"], ratio) if n else None}
        for name, r in task_results.items()
    }
    mious = [d["miou"] for d in datasets.values()]
    return {
        "n_selected": n,
        "pool_size": pool_size,
        "retained_fraction": ratio,
        "selection_hash": selection.selection_hash if selection else None,
        "pretrained": selection is not None,
        "datasets": datasets,
        "mean_miou": sum(mious) / len(mious),
        "mean_normdel": (sum(d["normdel"] for d in datasets.values()) / len(datasets)) if n else None,
        "tier": tier.name,
        "tier_hash": tier.hash,
        "code_version": code_version(),
        "libraries": library_versions(),
        "seed": seed,
        "epochs": tier.pretrain.samples_seen / n if n else 0.0,
        "samples_seen": tier.pretrain.samples_seen if n else 0,
        "loss_curve": [list(p) for p in (loss_curve or [])],
        "timings": timings,
    }


def evaluate(
    *,
    pool_dir: str | Path,
    selection: ResolvedSelection | None,
    tasks_dir: str | Path | None,
    tier: Tier,
    seed: int,
    cache_dir: str | Path,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """The whole protocol for one selection (None: the no-pretraining floor)."""
    started = time.perf_counter()
    pool = open_pool(pool_dir)
    tasks_dir = Path(tasks_dir) if tasks_dir else Path(pool_dir) / "tasks"
    names = list_tasks(tasks_dir)
    timings: dict[str, float] = {}
    encoder_path, curve = None, None
    if selection is not None:
        result = pretrain_encoder(
            pool=pool,
            selection=selection,
            tier=tier,
            seed=seed,
            cache_dir=Path(cache_dir),
            progress=progress,
            device=device,
        )
        encoder_path, curve = result.encoder_path, result.loss_curve
        timings["pretrain"] = result.seconds
    task_results = {}
    for name in names:
        task_results[name] = finetune_task(
            encoder_path=encoder_path,
            task_dir=tasks_dir / name,
            tier=tier,
            seed=seed,
            progress=progress,
            device=device,
        )
        timings[f"finetune/{name}"] = task_results[name]["seconds"]
    timings["finetune"] = sum(r["seconds"] for r in task_results.values())
    timings["total"] = time.perf_counter() - started
    return assemble_results(
        selection=selection,
        pool_size=pool.size,
        tier=tier,
        seed=seed,
        task_results=task_results,
        timings=timings,
        loss_curve=curve,
    )
