"""Bodies of the admin API (`/api/v1/admin/...`). Every mutating request names its `reason`, which goes to
the audit log with the organizer who acted."""

from __future__ import annotations

from datetime import datetime

from pydantic import AliasPath, BaseModel, Field, field_validator

from app.models import DuplicatePolicy, Visibility
from app.models.teams import TEAM_NAME_MAX, TEAM_NAME_PATTERN
from app.schemas import FromRow, SubmissionOut, computed

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why: written to the audit log")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a reason (it is written to the audit log)")
        return value.strip()


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-03-01T00:00:00+00:00")
    return value


class BenchmarkCreate(Reason):
    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class BenchmarkEdit(Reason):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None


class BenchmarkOut(FromRow):
    slug: str
    name: str
    description: str
    phases: list[str]
    created_at: datetime

    @field_validator("phases", mode="before")
    @classmethod
    def _slugs(cls, phases: list) -> list:
        return [getattr(p, "slug", p) for p in phases]


class PhaseFields(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    pool_dir: str | None = Field(default=None, description="pool folder on the server (and the workers)")
    tasks_dir: str | None = Field(default=None, description="downstream tasks folder; default POOL/tasks")
    tier: str | None = Field(default=None, description="a tier name (`synth-tiny`, `paper`) or a tier file")
    seeds: int | None = Field(
        default=None, ge=1, le=20, description="seeds each submission is evaluated under"
    )
    quota_per_day: int | None = Field(default=None, ge=0)
    quota_total: int | None = Field(default=None, ge=0)
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    results_visibility: Visibility | None = None
    duplicates: DuplicatePolicy | None = Field(
        default=None, description="a team's second upload of the same selection: allow, warn or refuse"
    )

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _with_zone(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class PhaseCreate(PhaseFields, Reason):
    benchmark: str = Field(pattern=SLUG, description="benchmark slug (created if new)")
    slug: str = Field(pattern=SLUG)
    pool_dir: str
    tier: str = "synth-tiny"
    seeds: int = Field(default=1, ge=1, le=20)
    results_visibility: Visibility = Visibility.public
    duplicates: DuplicatePolicy = DuplicatePolicy.warn


class PhaseEdit(PhaseFields, Reason):
    """Only the fields sent change; send `null` for a quota or date to remove it."""


class AdminPhaseOut(FromRow):
    slug: str
    benchmark: str = Field(validation_alias=AliasPath("benchmark", "slug"))
    name: str
    description: str
    pool_dir: str
    tasks_dir: str | None
    tier: str
    seeds: int
    quota_per_day: int | None
    quota_total: int | None
    opens_at: datetime | None
    closes_at: datetime | None
    results_visibility: str
    published: bool
    duplicates: str
    submissions: int = computed(0)
    warnings: list[str] = computed([], description="what about the phase is likely a mistake")


class Changed(BaseModel):
    target: str
    changes: dict = Field(description="{field: [old, new]} for what changed")
    audit_id: int


class Moderation(Reason):
    hidden: bool | None = None
    disqualified: bool | None = None


class AdminSubmissionOut(SubmissionOut):
    file_path: str | None  # submissions stored before their file went into the database
    dispatched_at: datetime | None


class Rerun(BaseModel):
    requeued: list[int]
    skipped_pending: list[int] = []
    audit_id: int


class TeamCreate(Reason):
    name: str = Field(min_length=1, max_length=TEAM_NAME_MAX, pattern=TEAM_NAME_PATTERN)
    is_admin: bool = False


class TeamEdit(Reason):
    disabled: bool


class Rekey(Reason):
    revoke_existing: bool = True


class TokenOut(BaseModel):
    team: str
    token: str = Field(description="shown this once; only its sha256 is stored")
    audit_id: int


class TokenInfo(BaseModel):
    prefix: str
    label: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TeamOut(BaseModel):
    name: str
    is_admin: bool
    disabled: bool
    created_at: datetime
    submissions: int
    tokens: list[TokenInfo]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    detail: dict | None
