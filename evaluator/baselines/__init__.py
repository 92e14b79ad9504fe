"""Selection baselines: random, MedDEL, SemDeDup, hard-sample (OptiDEL-style), prototype (CheXficient-style).

A pure library (numpy + torch, faiss for k-means): `select(name, Features(...), Options(...))` picks pool
indices. Computing the features (embeddings, MAE losses) lives in `evaluator.baselines.embed`; the
`delbench embed/select/baselines` commands in `evaluator.baselines.cli`.
"""

from evaluator.baselines.methods import (
    METHODS,
    Features,
    Method,
    Options,
    RatioUnreachable,
    Selected,
    SelectError,
    select,
)

__all__ = [
    "METHODS",
    "Features",
    "Method",
    "Options",
    "RatioUnreachable",
    "SelectError",
    "Selected",
    "select",
]
