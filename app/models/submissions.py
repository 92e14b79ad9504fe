"""Submissions, their evaluation stages, and results (per seed and per dataset).

A submission is evaluated under each of its seeds by the pipeline validate -> pretrain -> 8 finetunes ->
aggregate; each step is an `EvaluationStage` row, the unit of claiming, heartbeats and retries. A finished seed
leaves one `EvaluationRun` (the evaluator's whole results JSON) and eight `Result` rows; unique constraints
make writing them twice impossible.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime, str_enum, utcnow
from app.models.phases import Phase
from app.models.teams import Team


class SubmissionStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


IDEMPOTENCY_KEY_MAX = 200
PENDING_STATUSES = (SubmissionStatus.queued, SubmissionStatus.running)
# Failed and cancelled submissions give their quota back.
QUOTA_STATUSES = (SubmissionStatus.queued, SubmissionStatus.running, SubmissionStatus.succeeded)


class StageStatus(enum.StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class Submission(Base):
    __tablename__ = "submissions"
    # A retried upload names the first by its Idempotency-Key: at most one submission per key and team.
    __table_args__ = (UniqueConstraint("team_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"), index=True)
    # the upload as received
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    # The file's bytes live in the database, so that a worker on any host reads them without the API's disk
    # (deferred: loaded only when read); `file_path` is set on submissions stored before that, as files.
    selection_data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    file_path: Mapped[str | None] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_bytes: Mapped[int] = mapped_column(Integer)
    # what validation computed
    selection_hash: Mapped[str] = mapped_column(String(64), index=True)
    n: Mapped[int] = mapped_column(Integer)
    pool_size: Mapped[int] = mapped_column(Integer)
    retained_fraction: Mapped[float] = mapped_column(Float)
    seeds: Mapped[list[int]] = mapped_column(JSON)
    # what the team says about it
    method: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    code_url: Mapped[str | None] = mapped_column(String(500))
    paper_url: Mapped[str | None] = mapped_column(String(500))
    allow_selection_download: Mapped[bool] = mapped_column(Boolean, default=False)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    # moderation (organizers)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    disqualified: Mapped[bool] = mapped_column(Boolean, default=False)
    moderation_reason: Mapped[str | None] = mapped_column(Text)
    # evaluation state, written by the workers
    status: Mapped[SubmissionStatus] = mapped_column(
        str_enum(SubmissionStatus, "submission_status"), default=SubmissionStatus.queued, index=True
    )
    current_stage: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 over the whole pipeline
    eta_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last time work was enqueued
    # the headline scores (means over datasets, then over seeds), set when it succeeds
    mean_normdel: Mapped[float | None] = mapped_column(Float)
    mean_miou: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    team: Mapped[Team] = relationship()
    phase: Mapped[Phase] = relationship()

    def selection_bytes(self) -> bytes:
        """The uploaded file as received (from the database; from its file for a submission stored before)."""
        if self.selection_data is not None:
            return self.selection_data
        return Path(self.file_path).read_bytes()

    stages: Mapped[list[EvaluationStage]] = relationship(
        back_populates="submission", order_by="EvaluationStage.id", cascade="all, delete-orphan"
    )
    runs: Mapped[list[EvaluationRun]] = relationship(
        order_by="EvaluationRun.seed", cascade="all, delete-orphan"
    )
    results: Mapped[list[Result]] = relationship(order_by="Result.id", cascade="all, delete-orphan")


class EvaluationStage(Base):
    __tablename__ = "evaluation_stages"
    __table_args__ = (UniqueConstraint("submission_id", "seed", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    seed: Mapped[int] = mapped_column(Integer)  # `validate` runs once, under the first seed
    name: Mapped[str] = mapped_column(String(64))  # validate, pretrain, finetune:<dataset>, aggregate
    status: Mapped[StageStatus] = mapped_column(
        str_enum(StageStatus, "stage_status"), default=StageStatus.pending
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime
    )  # the lease: stale means the holder died
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds: Mapped[float | None] = mapped_column(Float)
    log_tail: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict | None] = mapped_column(JSON)  # the stage's output (encoder path, finetune result)

    submission: Mapped[Submission] = relationship(back_populates="stages")


class EvaluationRun(Base):
    """One seed's finished evaluation: the evaluator's results JSON (loss curve, timings, tier, code version)."""

    __tablename__ = "evaluation_runs"
    __table_args__ = (UniqueConstraint("submission_id", "seed"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    tier_name: Mapped[str] = mapped_column(String(100))
    tier_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(100))
    mean_miou: Mapped[float] = mapped_column(Float)
    mean_normdel: Mapped[float] = mapped_column(Float)
    results: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("submission_id", "seed", "dataset"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(64))
    miou: Mapped[float] = mapped_column(Float)
    normdel: Mapped[float] = mapped_column(Float)
