"""Scores and the phase leaderboard: ranked by mean NormDEL (the mean over seeds where there are several)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from typing import Literal

from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.db import DataVersion
from app.models import PENDING_STATUSES, Benchmark, Phase, Result, Submission, SubmissionStatus, Team
from app.schemas import DatasetScore, Leaderboard, LeaderboardRow, Scores
from app.services.lru import LruCache
from app.services.phases import pool_for
from evaluator.metrics import seed_sd
from evaluator.store import list_tasks


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
        mean_normdel_std=seed_sd(seed_normdel),
        mean_miou_std=seed_sd(seed_miou),
        datasets={
            name: DatasetScore(
                miou=statistics.fmean(r.miou for r in rs),
                normdel=statistics.fmean(r.normdel for r in rs),
                miou_std=seed_sd([r.miou for r in rs]),
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
    and organizers always; anyone else a board row (succeeded, not moderated, results public), and an
    organizers' baseline while it is evaluated too, so that everyone sees that work is under way."""
    if viewer is not None and (viewer.is_admin or viewer.id == submission.team_id):
        return True
    if submission.is_baseline and submission.status in PENDING_STATUSES:
        return not submission.hidden and not submission.disqualified
    return (
        submission.status == SubmissionStatus.succeeded
        and not submission.hidden
        and not submission.disqualified
        and submission.phase.results_public()
    )


BoardView = Literal["all", "best"]
# A random baseline "at the same R" is the one whose R is nearest, within this factor either way.
SAME_R_FACTOR = 1.25


def random_baseline_near(
    *, session: Session, submission: Submission, viewer: Team | None
) -> Submission | None:
    """The phase's random baseline (a baseline whose method starts with "random") whose retained fraction is
    nearest the submission's, if one this viewer may see has results and lies within SAME_R_FACTOR."""
    candidates = session.scalars(
        select(Submission).where(
            Submission.phase_id == submission.phase_id,
            Submission.is_baseline.is_(True),
            Submission.status == SubmissionStatus.succeeded,
            Submission.id != submission.id,
            func.lower(Submission.method).startswith("random"),
        )
    )

    def distance(c: Submission) -> float:
        return abs(math.log(c.retained_fraction / submission.retained_fraction))

    near = [c for c in candidates if submission_visible(c, viewer) and distance(c) <= math.log(SAME_R_FACTOR)]
    return min(near, key=lambda c: (distance(c), c.id), default=None)


def leaderboard(
    *, session: Session, phase: Phase, viewer: Team | None, view: BoardView = "all"
) -> Leaderboard:
    board = _all_entries(session=session, phase=phase, viewer=viewer)
    return best_per_team(board) if view == "best" else board


def _all_entries(*, session: Session, phase: Phase, viewer: Team | None) -> Leaderboard:
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


def best_per_team(board: Leaderboard) -> Leaderboard:
    """Each team's best entry only (its highest-ranked row), ranked anew; every baseline stays, since each
    is a reference point of its own rather than a team's attempt."""
    seen: set[str] = set()
    kept = []
    for row in board.rows:
        if row.is_baseline:
            kept.append(row)
        elif row.team not in seen:
            kept.append(row)
            seen.add(row.team)
    rows = [row.model_copy(update={"rank": rank}) for rank, row in enumerate(kept, 1)]
    return board.model_copy(update={"rows": rows, "view": "best"})


# Boards as served JSON bytes, by `board_stamp`. Building a 1,000-row board (ORM rows, scores, the response
# model's validation and encoding) took ~0.5 s of CPU a request, ~2 requests/s on 2 cores; a hit costs two
# small queries (bench/api.py, docs/performance.md).
_boards: LruCache[tuple, bytes] = LruCache(capacity=64)
# The public board of each phase with the database's `DataVersion` it was checked against: while the
# version has not moved, nothing on the board can have changed, and no query is needed at all.
_public_boards: LruCache[tuple[str, str], tuple[int, bytes]] = LruCache(capacity=64)


def fresh_public_board(changes: DataVersion, slug: str) -> tuple[int | None, bytes | None]:
    """(the database's version now, the phase's public board if the database has not changed since it was
    served, else None). Read the version before the session that would build the board begins."""
    version = changes()
    hit = _public_boards.get((changes.scope, slug))
    return version, (hit[1] if hit is not None and version is not None and hit[0] == version else None)


def remember_public_board(changes: DataVersion, slug: str, version: int | None, body: bytes) -> None:
    """Keep `body` as the public board at `version` (read before the session that built it began: a commit
    in between moves the version on, and the next request looks the board up again)."""
    if version is not None:
        _public_boards.put((changes.scope, slug), (version, body))


def board_stamp(*, session: Session, phase: Phase, viewer: Team | None) -> tuple:
    """Everything a board's content depends on, cheaply: the phase's shown fields, the datasets, whose rows
    the viewer sees, and its succeeded submissions' count, id sum and last update. Any change to one of those
    submissions (results, moderation, re-run) bumps its `updated_at` (an ORM and Core `onupdate`); a
    submission leaving or joining the set changes the count or the id sum."""
    benchmark = select(Benchmark.slug).where(Benchmark.id == phase.benchmark_id).scalar_subquery()
    succeeded = (Submission.phase_id == phase.id, Submission.status == SubmissionStatus.succeeded)
    count, id_sum, last, benchmark_slug = session.execute(
        select(func.count(Submission.id), func.sum(Submission.id), func.max(Submission.updated_at), benchmark)
        .where(*succeeded)
    ).one()  # fmt: skip
    shown = (phase.id, phase.slug, benchmark_slug, phase.tier, phase.results_visibility, phase.published)
    who = visible_to(phase, viewer)
    scope = "all" if who is True else "none" if who is False else f"team:{who}"  # True == 1 in a tuple key
    return (*shown, tuple(list_tasks(phase.tasks_path)), scope, count, id_sum, last)


def leaderboard_json(
    *, session: Session, phase: Phase, viewer: Team | None, view: BoardView = "all"
) -> bytes:
    """The board as the JSON route serves it (the bytes FastAPI would render from `Leaderboard`), rebuilt only
    when its `board_stamp` changes. Stamp and board are read in the request's one transaction."""
    key = (*board_stamp(session=session, phase=phase, viewer=viewer), view)
    body = _boards.get(key)
    if body is None:
        board = leaderboard(session=session, phase=phase, viewer=viewer, view=view)
        body = JSONResponse(board.model_dump(mode="json")).body
        _boards.put(key, body)
    return body


def phase_pool_size(phase: Phase) -> int:
    return pool_for(phase).size


CSV_FIXED = ["rank", "submission_id", "team", "method", "is_baseline", "n", "retained_fraction", "seeds"]


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """A text cell that a spreadsheet would run as a formula gets a leading quote (OWASP's CSV-injection
    advice); numbers pass as they are, so a negative score stays a number."""
    if isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES):
        return "'" + cell
    return cell


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
        writer.writerow(
            [*("" if c is None else spreadsheet_safe(c) for c in cells), row.created_at.isoformat()]
        )
    return out.getvalue()
