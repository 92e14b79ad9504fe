"""Which square resolutions an ingest stores: by default every protocol tier's, so any tier runs unresized."""

from __future__ import annotations

from evaluator.ingest import IngestError
from evaluator.tier import available_tiers, load_tier


def tier_resolutions() -> list[int]:
    return sorted({load_tier(name).resolution for name in available_tiers()})


def check_resolutions(resolutions: list[int]) -> list[int]:
    bad = [r for r in resolutions if not 8 <= r <= 4096]
    if bad or not resolutions:
        raise IngestError(f"resolutions must be between 8 and 4096 pixels; got {resolutions}")
    return sorted(set(resolutions))
