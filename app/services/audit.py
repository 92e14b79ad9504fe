"""The audit log: every organizer action, with who did it and why. One function writes it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin_schemas import Changed
from app.models import AuditLog, Team

ADMIN_TOKEN_ACTOR = "admin-token"  # the settings' DELBENCH_ADMIN_TOKEN, which belongs to no team


def record(
    *,
    session: Session,
    actor: Team | str | None,
    action: str,
    target: str,
    reason: str = "",
    detail: dict | None = None,
) -> AuditLog:
    """Add one entry in the caller's transaction, so the action and its record commit (or fail) together.
    `actor`: an admin team, None for the settings' admin token, or a name ("cli:alice", "demo")."""
    if isinstance(actor, Team):
        name, team_id = actor.name, actor.id
    else:
        name, team_id = actor or ADMIN_TOKEN_ACTOR, None
    entry = AuditLog(
        actor_team_id=team_id, actor=name, action=action, target=target, reason=reason, detail=detail
    )
    session.add(entry)
    session.flush()
    return entry


def commit_change(
    *, session: Session, actor: Team | str | None, action: str, target: str, reason: str, changes: dict
) -> Changed:
    """Record a change made in the caller's transaction, commit the two together, and describe it for the
    API's answer (what changed, and the audit entry that says who and why)."""
    entry = record(session=session, actor=actor, action=action, target=target, reason=reason, detail=changes)
    session.commit()
    return Changed(target=target, changes=changes, audit_id=entry.id)


def entries(*, session: Session, limit: int = 100, target: str | None = None) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if target:
        query = query.where(AuditLog.target == target)
    return list(session.scalars(query))
