"""The pipeline's Celery tasks: validate -> pretrain -> chord(8 finetunes) -> aggregate, per seed.

Each task body is one evaluator call; `run_stage` does the claiming, progress, logging and error mapping.
The evaluator (and torch) is imported inside the bodies: the module stays cheap to import.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from celery import shared_task

from app.contract import Stage
from app.models import StageStatus, Submission
from app.services import pipeline
from app.services.phases import pool_at
from app.services.submissions import FINETUNE_PREFIX, STAGE_AGGREGATE, STAGE_PRETRAIN, STAGE_VALIDATE
from evaluator.selection import ResolvedSelection, load_selection
from evaluator.store import Pool, list_tasks
from evaluator.tier import load_tier
from worker.runner import NotReady, StageContext, run_stage
from worker.runtime import runtime


def _pool(ctx: StageContext) -> Pool:
    """This host's copy of the phase's pool, refused unless it is the very pool the phase was set up with:
    each worker host keeps its own copy, and a stale or damaged one must not produce a result."""
    pool = pool_at(ctx.pool_dir)
    if ctx.pool_hash and pool.content_hash != ctx.pool_hash:
        raise ValueError(
            f"the pool at {ctx.pool_dir} on worker host {socket.gethostname()} is not the phase's pool (content "
            f"hash {pool.content_hash[:12]}, the phase's {ctx.pool_hash[:12]}): give this host a copy of the "
            "phase's pool, then re-run the submission"
        )
    return pool


def _selection(ctx: StageContext) -> ResolvedSelection:
    data = ctx.selection_data
    if hashlib.sha256(data).hexdigest() != ctx.file_sha256:
        raise ValueError(
            f"stored selection file of submission {ctx.submission_id} does not match its sha256: refusing to "
            "evaluate it"
        )
    selection = load_selection(data, _pool(ctx).index_of)
    if selection.selection_hash != ctx.selection_hash:
        raise ValueError(
            "the selection resolves differently against the pool than at upload (was the pool changed?)"
        )
    return selection


def _stage_detail(ctx: StageContext, name: str) -> dict:
    with runtime().session() as session:
        return dict(pipeline.stage_row(session, ctx.submission_id, ctx.seed, name).detail or {})


def _validate(ctx: StageContext) -> dict:
    selection = _selection(ctx)
    tier = load_tier(ctx.tier)
    return {"n": selection.n, "tier_hash": tier.hash, "tasks": list_tasks(ctx.tasks_dir)}


def _pretrain(ctx: StageContext) -> dict:
    from evaluator.protocol import encoder_key, pretrain_encoder

    selection, tier = _selection(ctx), load_tier(ctx.tier)
    result = pretrain_encoder(
        pool=_pool(ctx),
        selection=selection,
        tier=tier,
        seed=ctx.seed,
        cache_dir=ctx.settings.cache_dir,
        progress=ctx.progress,
        device=ctx.settings.device,
        store=runtime().store,
        processes=ctx.settings.pretrain_processes,
        devices=ctx.settings.pretrain_devices,
    )
    return {
        "encoder_path": str(result.encoder_path),
        "encoder_key": encoder_key(selection.selection_hash, tier, ctx.seed),
        "cache_hit": result.cache_hit,
        "seconds": result.seconds,
        "loss_curve": [list(p) for p in result.loss_curve],
    }


def _finetune(ctx: StageContext) -> dict:
    from evaluator.protocol import fetch_encoder, finetune_task

    _pool(ctx)
    pretrained = _stage_detail(ctx, STAGE_PRETRAIN)
    tier = load_tier(ctx.tier)
    encoder_path = Path(pretrained["encoder_path"])
    if not encoder_path.exists():  # pretrained on another host: its copy is in the artifact store
        store, key = runtime().store, pretrained.get("encoder_key")
        fetched = fetch_encoder(store, key, ctx.settings.cache_dir, tier) if store and key else None
        if fetched is None:
            raise FileNotFoundError(
                f"the encoder {encoder_path} is not on this host and no artifact store has it: workers on "
                "several hosts need DELBENCH_ARTIFACT_STORE (docs/scaling.md)"
            )
        encoder_path = fetched
    return finetune_task(
        encoder_path=encoder_path,
        task_dir=ctx.tasks_dir / ctx.name.removeprefix(FINETUNE_PREFIX),
        tier=tier,
        seed=ctx.seed,
        progress=ctx.progress,
        device=ctx.settings.device,
    )


def _aggregate(ctx: StageContext) -> dict:
    from evaluator.protocol import assemble_results

    with runtime().session() as session:
        stages = [s for s in session.get(Submission, ctx.submission_id).stages if s.seed == ctx.seed]
        finetunes = {
            s.name.removeprefix(FINETUNE_PREFIX): s for s in stages if s.name.startswith(FINETUNE_PREFIX)
        }
        if any(s.status != StageStatus.succeeded for s in finetunes.values()):
            # the chord fired early (a duplicate finetune message returned at once); the reconciler
            # enqueues the aggregate again once the last finetune is done
            raise NotReady(
                f"finetunes not all done: {sorted(n for n, s in finetunes.items() if s.status != 'succeeded')}"
            )
        pretrain = next(s for s in stages if s.name == STAGE_PRETRAIN).detail
        task_results = {name: s.detail for name, s in finetunes.items()}
    timings = {"pretrain": pretrain["seconds"]}
    timings.update({f"finetune/{name}": r["seconds"] for name, r in task_results.items()})
    timings["finetune"] = sum(r["seconds"] for r in task_results.values())
    selection = _selection(ctx)
    return assemble_results(
        selection=selection,
        pool_size=selection.pool_size,
        tier=load_tier(ctx.tier),
        seed=ctx.seed,
        task_results=task_results,
        timings=timings,
        loss_curve=pretrain["loss_curve"],
    )


def _store(session, stage, results, seconds, log_tail) -> None:
    pipeline.store_results(session=session, stage=stage, results=results, seconds=seconds, log_tail=log_tail)


@shared_task(name=Stage.validate.task, bind=True, ignore_result=True)
def validate(self, submission_id: int) -> dict | None:
    return run_stage(self, submission_id=submission_id, seed=None, name=STAGE_VALIDATE, body=_validate)


@shared_task(name=Stage.pretrain.task, bind=True, ignore_result=True)
def pretrain(self, submission_id: int, seed: int) -> dict | None:
    return run_stage(self, submission_id=submission_id, seed=seed, name=STAGE_PRETRAIN, body=_pretrain)


@shared_task(name=Stage.finetune.task, bind=True)  # results kept: it is a chord's header
def finetune(self, submission_id: int, seed: int, task_name: str) -> dict | None:
    name = FINETUNE_PREFIX + task_name
    return run_stage(self, submission_id=submission_id, seed=seed, name=name, body=_finetune, advance=False)


@shared_task(name=Stage.aggregate.task, bind=True, ignore_result=True)
def aggregate(self, _chord_results, submission_id: int, seed: int) -> dict | None:
    # a chord's callback: the finetunes' return values come first (unused: the stage rows hold them)
    return run_stage(
        self, submission_id=submission_id, seed=seed, name=STAGE_AGGREGATE, body=_aggregate, finish=_store
    )
