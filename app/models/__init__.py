"""The SQLAlchemy models; Alembic's `env.py` takes `Base.metadata` from here."""

from app.models.base import Base, UTCDateTime, utcnow
from app.models.ops import AuditLog, WorkerHeartbeat
from app.models.phases import Benchmark, DuplicatePolicy, Phase, Visibility
from app.models.submissions import (
    PENDING_STATUSES,
    QUOTA_STATUSES,
    EvaluationRun,
    EvaluationStage,
    Result,
    StageStatus,
    Submission,
    SubmissionStatus,
)
from app.models.teams import ApiToken, Team

__all__ = [
    "PENDING_STATUSES",
    "QUOTA_STATUSES",
    "ApiToken",
    "AuditLog",
    "Base",
    "Benchmark",
    "DuplicatePolicy",
    "EvaluationRun",
    "EvaluationStage",
    "Phase",
    "Result",
    "StageStatus",
    "Submission",
    "SubmissionStatus",
    "Team",
    "UTCDateTime",
    "Visibility",
    "WorkerHeartbeat",
    "utcnow",
]
