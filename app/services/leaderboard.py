"""Scores and the phase leaderboard: ranked by mean NormDEL (the mean over seeds where there are several)."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import Phase, Result, Submission, SubmissionStatus, Team
from app.schemas import DatasetScore, Leaderboard, LeaderboardRow, Scores
from app.services.phases import pool_for
from evaluator.store import list_tasks


def _std(values: list[float]) -> float | None:
    return statistics.pstdev(values) if len(values) > 1 else None


def scores(results: list[Result]) -> Scores | None:
    """Per-dataset means over seeds, and the means over datasets (per seed, then over seeds)."""
    if not results:
        return None
    by_dataset: dict[str, list[Result]] = defaultdict(list)
    by_seed: dict[int, list[Result]] = defaultdict(list)
    for r in results:
        by_dataset[r.dataset].append(r)
        by_seed[r.seed].append(r)
    seed_normdel = [statistics.fmean(r.normdel for r in rs) for rs in by_seed.values()]
    seed_miou = [statistics.fmean(r.miou for r in rs) for rs in by_seed.values()]
    return Scores(
        seeds=sorted(by_seed),
        mean_normdel=statistics.fmean(seed_normdel),
        mean_miou=statistics.fmean(seed_miou),
        mean_normdel_std=_std(seed_normdel),
        mean_miou_std=_std(seed_miou),
        datasets={
            name: DatasetScore(
                miou=statistics.fmean(r.miou for r in rs),
                normdel=statistics.fmean(r.normdel for r in rs),
                miou_std=_std([r.miou for r in rs]),
            )
            for name, rs in by_dataset.items()
        },
    )


def visible_to(phase: Phase, viewer: Team | None) -> int | None | bool:
    """Whose rows a viewer may see: True for all, a team id for only its own, False for none."""
    if phase.results_public() or (viewer is not None and viewer.is_admin):
        return True
    return viewer.id if viewer is not None else False


def submission_visible(submission: Submission, viewer: Team | None) -> bool:
    """Whether `viewer` may see a submission at all (its page, its scores, its selection file): its own team
    and organizers always; anyone else only a board row (succeeded, not moderated, results public)."""
    if viewer is not None and (viewer.is_admin or viewer.id == submission.team_id):
        return True
    return (
        submission.status == SubmissionStatus.succeeded
        and not submission.hidden
        and not submission.disqualified
        and submission.phase.results_public()
    )


def leaderboard(*, session: Session, phase: Phase, viewer: Team | None) -> Leaderboard:
    who = visible_to(phase, viewer)
    query = (
        select(Submission)
        .where(
            Submission.phase_id == phase.id,
            Submission.status == SubmissionStatus.succeeded,
            Submission.hidden.is_(False),
            Submission.disqualified.is_(False),
        )
        .options(selectinload(Submission.results), selectinload(Submission.team))
    )
    if who is False:
        submissions = []
    else:
        if who is not True:
            query = query.where(Submission.team_id == who)
        submissions = list(session.scalars(query))
    rows = []
    for submission in submissions:
        s = scores(submission.results)
        if s is None:
            continue
        rows.append((s, submission))
    rows.sort(key=lambda item: (-item[0].mean_normdel, item[1].created_at, item[1].id))
    return Leaderboard(
        phase=phase.slug,
        benchmark=phase.benchmark.slug,
        tier=phase.tier,
        results_visibility=phase.results_visibility.value,
        published=phase.published,
        datasets=list_tasks(phase.tasks_path),
        rows=[
            LeaderboardRow(
                rank=rank,
                submission_id=sub.id,
                team=sub.team.name,
                method=sub.method,
                is_baseline=sub.is_baseline,
                n=sub.n,
                retained_fraction=sub.retained_fraction,
                mean_normdel=s.mean_normdel,
                mean_miou=s.mean_miou,
                mean_normdel_std=s.mean_normdel_std,
                mean_miou_std=s.mean_miou_std,
                seeds=len(s.seeds),
                datasets=s.datasets,
                created_at=sub.created_at,
            )
            for rank, (s, sub) in enumerate(rows, 1)
        ],
    )


def phase_pool_size(phase: Phase) -> int:
    return pool_for(phase).size


CSV_FIXED = ["rank", "submission_id", "team", "method", "is_baseline", "n", "retained_fraction", "seeds"]


def board_csv(board: Leaderboard) -> str:
    """The board as CSV: one row per entry, scores in [0, 1] (the page shows mIoU in percent)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    score_cols = ["mean_normdel", "mean_normdel_std", "mean_miou", "mean_miou_std"]
    writer.writerow(
        CSV_FIXED + score_cols + [f"miou:{d}" for d in board.datasets] + [f"normdel:{d}" for d in board.datasets]
        + ["created_at"]
    )  # fmt: skip
    for row in board.rows:
        values = row.model_dump()
        cells = [values[c] for c in CSV_FIXED + score_cols]
        cells += [row.datasets[d].miou if d in row.datasets else None for d in board.datasets]
        cells += [row.datasets[d].normdel if d in row.datasets else None for d in board.datasets]
        writer.writerow([*("" if c is None else c for c in cells), row.created_at.isoformat()])
    return out.getvalue()
