"""How the evaluator reports progress: `progress(stage, done, total)`, e.g. ("pretrain", 512, 1024) or
("finetune/etis", 40, 100). The CLI draws it as bars (evaluator.cli.StageProgress), a worker writes it to
the database (worker.runner); nothing in the evaluator depends on who listens."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
