"""Operations: queue and worker health, and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.admin_schemas import AuditOut
from app.api.deps import CeleryDep, SessionDep, SettingsDep
from app.services import audit
from app.services.health import health

router = APIRouter()


@router.get("/health")
def queue_health(session: SessionDep, celery: CeleryDep, settings: SettingsDep) -> dict:
    """Submissions by status, the broker's queue lengths, the latest running / queued / failed submissions,
    and every worker with `alive` (a heartbeat within three reconcile periods) and what it is running."""
    return health(session=session, celery=celery, settings=settings)


@router.get("/audit", response_model=list[AuditOut])
def audit_log(session: SessionDep, limit: int = Query(100, ge=1, le=5000), target: str | None = None):
    """The audit log, newest first: who did what, to what, and why."""
    return [
        AuditOut(
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            reason=e.reason,
            detail=e.detail,
        )  # fmt: skip
        for e in audit.entries(session=session, limit=limit, target=target)
    ]
