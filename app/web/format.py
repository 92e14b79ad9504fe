"""Display helpers for the templates: percent, scores with their spread over seeds, short dataset names."""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment
from markupsafe import Markup

# short column headers for the eight tasks (the full name is the header's tooltip)
LABELS = {
    "kvasir-instrument": "Kv-Instr",
    "kvasir-seg": "Kv-SEG",
    "imageclef-polyp": "CLEF",
    "etis": "ETIS",
    "polypgen": "PolypGen",
    "cvc-300": "CVC-300",
    "cvc-clinicdb": "ClinicDB",
    "cvc-colondb": "ColonDB",
}


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}"


def pm_pct(value: float | None, spread: float | None, digits: int = 1) -> str:
    """mIoU in percent, with ± its spread over seeds where there are several."""
    return pct(value, digits) + (f" ± {spread * 100:.{digits}f}" if spread is not None else "")


def stacked(text: str, spread: str | None) -> Markup:
    """A table cell's value with its spread over seeds on a line of its own, so that a board of several
    seeds stays as narrow as a board of one."""
    if spread is None:
        return Markup.escape(text)
    return Markup('{}<span class="sd">± {}</span>').format(text, spread)


def pm_cell(value: float | None, spread: float | None, digits: int = 1) -> Markup:
    return stacked(pct(value, digits), None if spread is None else f"{spread * 100:.{digits}f}")


def score_cell(value: float | None, spread: float | None, digits: int = 4) -> Markup:
    return stacked(score(value, None, digits), None if spread is None else f"{spread:.{digits}f}")


def score(value: float | None, spread: float | None = None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def day(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d")


def stamp(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def about(value: float) -> str:
    """A duration for an estimate: whole seconds, minutes or hours."""
    if value < 90:
        return f"{max(value, 1):.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def progress_line(status: dict) -> str:
    """What a pending submission's page says about it: its place in the queue while it waits, its stage
    and progress once it runs, each with the estimate there is (the same text the page's poll shows)."""
    if status["queue_position"] is not None:
        running = status["queue_ahead"] - status["queue_position"] + 1
        parts = [
            f"waiting for a GPU worker: place {status['queue_position']} in the queue, "
            f"{running} evaluation{'' if running == 1 else 's'} running ahead of it"
        ]
        if status["starts_in_seconds"] is not None:
            parts.append(f"starts in about {about(status['starts_in_seconds'])}")
        else:
            parts.append("an estimate comes once an evaluation has finished on this server")
    else:
        parts = [f"{status['current_stage'] or status['status']} · {status['progress'] * 100:.1f} %"]
    if status["eta_seconds"] is not None:
        parts.append(f"done in about {about(status['eta_seconds'])}")
    return " · ".join(parts)


def register_filters(env: Environment) -> None:
    env.filters.update(
        pct=pct,
        pm_pct=pm_pct,
        score=score,
        day=day,
        stamp=stamp,
        seconds=seconds,
        pm_cell=pm_cell,
        score_cell=score_cell,
    )
    env.globals["label"] = lambda name: LABELS.get(name, name)
