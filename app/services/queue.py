"""Where a submission stands in the queue and when it should start and finish.

The policy is first come, first served: stages are sent to the broker in the order submissions arrive, and
the GPU workers take them in that order. A submission *waits* until its first GPU stage (pretraining)
starts; its place is one more than the number of waiting submissions that arrived before it, whatever their
phase or team (only counts are shown, never whose they are), and the running ones are counted apart.

The estimate counts work, not submissions: each unfinished submission ahead still needs its typical
evaluation time times what is left of it, and the alive GPU workers drain that work in parallel. The typical
time is the median compute time per seed (the sum of its stages' seconds) of the last finished evaluations
under the same tier on this server; before one has finished there is a place but no estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import (
    PENDING_STATUSES,
    Phase,
    StageStatus,
    Submission,
    SubmissionStatus,
    WorkerHeartbeat,
    utcnow,
)
from app.services.submissions import STAGE_VALIDATE

HISTORY = 20  # finished evaluations per tier the typical time is the median of
GPU_QUEUE = "gpu"


@dataclass(frozen=True)
class Standing:
    """One submission's place and estimates. Once it runs only `eta_seconds` is set (from its own progress);
    once it has finished, nothing."""

    position: int | None = None  # 1: the next to start
    ahead: int | None = None  # unfinished submissions before it, waiting or running
    running_ahead: int | None = None
    starts_in_seconds: float | None = None
    eta_seconds: float | None = None  # until it finishes


def waiting(submission: Submission) -> bool:
    """Unfinished, and none of its GPU stages started yet (validation runs on the light queue)."""
    return submission.status in PENDING_STATUSES and all(
        s.status == StageStatus.pending and s.progress == 0.0
        for s in submission.stages
        if s.name != STAGE_VALIDATE
    )


class QueueView:
    """The queue as one request sees it: read once, asked about any number of submissions."""

    def __init__(self, session: Session, *, worker_alive_seconds: float, now: datetime | None = None):
        self.now = now or utcnow()
        self.pending = list(
            session.scalars(
                select(Submission)
                .where(Submission.status.in_(PENDING_STATUSES))
                .options(selectinload(Submission.stages), selectinload(Submission.phase))
                .order_by(Submission.created_at, Submission.id)
            )
        )
        alive_since = self.now - timedelta(seconds=worker_alive_seconds)
        self.gpu_workers = sum(
            GPU_QUEUE in w.queues.split(",")
            for w in session.scalars(
                select(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at >= alive_since)
            )
        )
        self._session = session
        self._typical: dict[str, float | None] = {}

    def typical_seconds(self, tier: str) -> float | None:
        """Median compute seconds per seed of the last finished evaluations under `tier`."""
        if tier not in self._typical:
            finished = self._session.scalars(
                select(Submission)
                .join(Phase, Submission.phase_id == Phase.id)
                .where(Phase.tier == tier, Submission.status == SubmissionStatus.succeeded)
                .options(selectinload(Submission.stages))
                .order_by(Submission.finished_at.desc())
                .limit(HISTORY)
            )
            per_seed = [
                sum(s.seconds or 0.0 for s in sub.stages if s.name != STAGE_VALIDATE) / len(sub.seeds)
                for sub in finished
            ]
            per_seed = [t for t in per_seed if t > 0]
            self._typical[tier] = statistics.median(per_seed) if per_seed else None
        return self._typical[tier]

    def remaining_seconds(self, submission: Submission) -> float | None:
        typical = self.typical_seconds(submission.phase.tier)
        if typical is None:
            return None
        return typical * len(submission.seeds) * (1.0 - submission.progress)

    def standing(self, submission: Submission) -> Standing:
        if submission.status not in PENDING_STATUSES:
            return Standing()
        if not waiting(submission):
            if submission.eta_at is None:
                return Standing()
            return Standing(eta_seconds=max(0.0, (submission.eta_at - self.now).total_seconds()))
        ahead = [s for s in self.pending if (s.created_at, s.id) < (submission.created_at, submission.id)]
        own = self.remaining_seconds(submission)
        work = [self.remaining_seconds(s) for s in ahead]
        starts_in = None
        if self.gpu_workers and own is not None and None not in work:
            starts_in = sum(work) / self.gpu_workers
        running = sum(not waiting(s) for s in ahead)
        return Standing(
            position=len(ahead) - running + 1,
            ahead=len(ahead),
            running_ahead=running,
            starts_in_seconds=starts_in,
            eta_seconds=None if starts_in is None else starts_in + own,
        )
