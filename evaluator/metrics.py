"""mIoU and NormDEL (the DataDEL paper, Section 3.3). NumPy only, so light commands need no torch."""

from __future__ import annotations

import math
import statistics

import numpy as np

NORMDEL_ALPHA = 1.0


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """cm[t, p] counts pixels of true class t predicted as p."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    return np.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def miou_from_confusion(cm: np.ndarray) -> float:
    """Mean over classes of IoU = TP / (TP + FP + FN), from a confusion matrix accumulated over a whole split.

    A class absent from both prediction and truth has no IoU and is left out of the mean.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    valid = union > 0
    return float((tp[valid] / union[valid]).mean()) if valid.any() else 0.0


def normdel(miou: float, retained_fraction: float, alpha: float = NORMDEL_ALPHA) -> float:
    """NormDEL = sigmoid(mIoU * exp(-alpha * R)), with mIoU in [0, 1] and R in (0, 1]."""
    if not 0.0 <= miou <= 1.0:
        raise ValueError(f"mIoU must be in [0, 1], got {miou}")
    if not 0.0 < retained_fraction <= 1.0:
        raise ValueError(f"retained fraction R must be in (0, 1], got {retained_fraction}")
    del_score = miou * math.exp(-alpha * retained_fraction)
    return 1.0 / (1.0 + math.exp(-del_score))


def seed_sd(values) -> float | None:
    """The spread of a score over seeds, wherever one is shown (board, submission page, baselines tables):
    the sample standard deviation, since the seeds run are a sample of the seeds one could run. None for
    fewer than two values."""
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else None
