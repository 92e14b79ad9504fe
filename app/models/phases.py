"""Benchmarks and their phases: which pool, tier and tasks a phase evaluates with, its quotas and dates."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime, str_enum, utcnow


class Visibility(enum.StrEnum):
    public = "public"
    hidden = "hidden"  # participants see only their own scores until the phase is published


class DuplicatePolicy(enum.StrEnum):
    """What a phase does with a team's upload of a selection it already submitted (same selection hash)."""

    allow = "allow"  # accepted silently
    warn = "warn"  # accepted, and the answer names the earlier submission
    refuse = "refuse"  # 409, nothing stored


class Benchmark(Base):
    __tablename__ = "benchmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    phases: Mapped[list[Phase]] = relationship(back_populates="benchmark")


class Phase(Base):
    __tablename__ = "phases"
    __table_args__ = (
        CheckConstraint("seeds >= 1", name="seeds_positive"),
        CheckConstraint("quota_per_day IS NULL OR quota_per_day >= 0", name="quota_per_day_nonnegative"),
        CheckConstraint("quota_total IS NULL OR quota_total >= 0", name="quota_total_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(ForeignKey("benchmarks.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)  # globally unique: URLs name a phase alone
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    pool_dir: Mapped[str] = mapped_column(String(500))
    # the pool's content hash when the phase was set up: each worker host checks its copy against it
    pool_hash: Mapped[str | None] = mapped_column(String(64))
    tasks_dir: Mapped[str | None] = mapped_column(String(500))  # None: POOL/tasks
    tier: Mapped[str] = mapped_column(String(500))  # a tier name (`synth-tiny`) or the path of a tier file
    seeds: Mapped[int] = mapped_column(
        Integer, default=1
    )  # each submission is evaluated under this many seeds
    quota_per_day: Mapped[int | None] = mapped_column(Integer)  # per team, per UTC day; None: no limit
    quota_total: Mapped[int | None] = mapped_column(Integer)  # per team over the phase; None: no limit
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    results_visibility: Mapped[Visibility] = mapped_column(
        str_enum(Visibility, "results_visibility"), default=Visibility.public
    )
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicates: Mapped[DuplicatePolicy] = mapped_column(
        str_enum(DuplicatePolicy, "duplicate_policy"), default=DuplicatePolicy.warn
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    benchmark: Mapped[Benchmark] = relationship(back_populates="phases")

    @property
    def tasks_path(self) -> Path:
        return Path(self.tasks_dir) if self.tasks_dir else Path(self.pool_dir) / "tasks"

    def is_open(self, now: datetime) -> bool:
        return (self.opens_at is None or now >= self.opens_at) and (
            self.closes_at is None or now < self.closes_at
        )

    def results_public(self) -> bool:
        return self.results_visibility == Visibility.public or self.published
