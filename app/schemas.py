"""Response bodies of the API (pydantic): what clients may rely on."""

from __future__ import annotations

from datetime import datetime

from pydantic import AliasPath, BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    rule: str
    message: str
    line: int | None = None
    id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class CancelRequest(BaseModel):
    reason: str = Field(default="", max_length=2000, description="why (kept in the audit log)")


class Accepted(BaseModel):
    id: int
    status: str
    status_url: str
    n: int
    retained_fraction: float
    selection_hash: str
    duplicate_of: int | None = Field(
        default=None, description="your earlier submission of the same selection in this phase, if any"
    )
    warnings: list[str] = []


class FromRow(BaseModel):
    """A response read off a database row by attribute (`Schema.model_validate(row)`); a relation's field
    names its path (`AliasPath("phase", "slug")`). What the row does not hold, the route fills in
    (`model_copy(update=...)`): those fields are `computed()`."""

    model_config = ConfigDict(from_attributes=True)


def computed(default=None, **field):
    """A field the route computes: its validation alias names nothing a row has, so reading a row leaves the
    default (a row's attribute of the same name, such as `Phase.is_open`, a method, is not read)."""
    return Field(default=default, validation_alias="__computed__", **field)


class StageOut(FromRow):
    name: str
    seed: int
    status: str
    progress: float
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    log_tail: str | None


class DatasetScore(BaseModel):
    miou: float
    normdel: float
    miou_std: float | None = None  # over seeds, where a phase evaluates several


class Scores(BaseModel):
    seeds: list[int]
    mean_normdel: float
    mean_miou: float
    mean_normdel_std: float | None = None
    mean_miou_std: float | None = None
    datasets: dict[str, DatasetScore]


class SubmissionOut(FromRow):
    id: int
    phase: str = Field(validation_alias=AliasPath("phase", "slug"))
    team: str = Field(validation_alias=AliasPath("team", "name"))
    method: str
    description: str
    code_url: str | None
    paper_url: str | None
    status: str
    current_stage: str | None
    progress: float
    eta_seconds: float | None = computed()  # until it ends: from the queue while it waits, then its progress
    # while it waits for a GPU worker (first come, first served): its place (1 = next), how many
    # unfinished submissions are before it, and when it should start; null once it has started
    queue_position: int | None = computed()
    queue_ahead: int | None = computed()
    starts_in_seconds: float | None = computed()
    n: int
    pool_size: int
    retained_fraction: float
    selection_hash: str
    file_sha256: str
    is_baseline: bool
    allow_selection_download: bool = False
    # moderation: a hidden or disqualified submission is off the board; its team reads why here
    hidden: bool = False
    disqualified: bool = False
    moderation_reason: str | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    log_tail: str | None
    results: Scores | None = computed()
    stages: list[StageOut]


class LeaderboardRow(BaseModel):
    rank: int
    submission_id: int
    team: str
    method: str
    is_baseline: bool
    n: int
    retained_fraction: float
    mean_normdel: float
    mean_miou: float
    mean_normdel_std: float | None
    mean_miou_std: float | None = None
    seeds: int
    datasets: dict[str, DatasetScore]
    created_at: datetime


class Leaderboard(BaseModel):
    phase: str
    benchmark: str
    tier: str
    results_visibility: str
    published: bool
    datasets: list[str]
    view: str = "all"  # "all": every entry; "best": each team's best entry (and every baseline)
    rows: list[LeaderboardRow]


class PhaseOut(FromRow):
    slug: str
    name: str
    benchmark: str = Field(validation_alias=AliasPath("benchmark", "slug"))
    description: str
    tier: str
    seeds: int
    pool_size: int = computed(0)
    quota_per_day: int | None
    quota_total: int | None
    opens_at: datetime | None
    closes_at: datetime | None
    is_open: bool = computed(False)
    results_visibility: str
    published: bool
