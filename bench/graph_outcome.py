"""Whether a measured run's pretraining step really replayed as a CUDA graph.

`evaluator.cuda_graph` falls back to the eager step if capture fails (and logs it), so that an evaluation
never stops on it. A benchmark must not then report the eager step's speed under a "+graph" label:
`graph_outcomes()` collects how each capture inside its block ended, and `label()` says it beside a figure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from evaluator.cuda_graph import CAPTURE_FAILED, CAPTURED, log


class _Outcomes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.outcomes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(CAPTURED):
            self.outcomes.append("captured")
        elif message.startswith(CAPTURE_FAILED):
            self.outcomes.append("failed")


@contextlib.contextmanager
def graph_outcomes() -> Iterator[list[str]]:
    """Yields a list that fills with "captured" or "failed", one per capture attempted in the block."""
    handler, level = _Outcomes(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # the success line is INFO; the failure's WARNING still reaches the terminal
    try:
        yield handler.outcomes
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def label(outcomes: list[str]) -> str:
    """'' when every capture succeeded; otherwise what the figure really measured."""
    if not outcomes:
        return " [no CUDA graph captured: eager figures]"
    if "failed" in outcomes:
        return " [CUDA graph capture FAILED: eager figures]"
    return ""
