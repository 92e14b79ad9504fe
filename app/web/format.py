"""Display helpers for the templates: percent, scores with their spread over seeds, short dataset names."""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment

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


def register_filters(env: Environment) -> None:
    env.filters.update(pct=pct, pm_pct=pm_pct, score=score, day=day, stamp=stamp, seconds=seconds)
    env.globals["label"] = lambda name: LABELS.get(name, name)
