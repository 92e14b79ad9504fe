import numpy as np
import pytest

from evaluator.metrics import confusion_matrix, miou_from_confusion, normdel, seed_sd


@pytest.mark.parametrize(
    ("miou", "ratio", "expected"),
    [(0.7938, 0.05, 0.6803), (0.7970, 1.0, 0.5728)],  # paper Table 3, Kvasir-Instrument (the DataDEL paper)
)
def test_normdel_matches_paper_values(miou, ratio, expected):
    assert normdel(miou, ratio) == pytest.approx(expected, abs=5e-5)


def test_normdel_rewards_smaller_retained_fraction():
    assert normdel(0.8, 0.05) > normdel(0.8, 0.5) > normdel(0.8, 1.0)


@pytest.mark.parametrize(("miou", "ratio"), [(1.2, 0.5), (-0.1, 0.5), (0.5, 0.0), (0.5, 1.5)])
def test_normdel_refuses_out_of_range(miou, ratio):
    with pytest.raises(ValueError):
        normdel(miou, ratio)


def test_miou_from_hand_computed_confusion():
    # truth / prediction over 2 images of 4 pixels, accumulated over the split:
    target = np.array([[0, 0, 1, 1], [0, 0, 0, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
    cm = confusion_matrix(pred, target)
    # cm[t, p]: bg->bg 3, bg->fg 2, fg->bg 1, fg->fg 2
    assert cm.tolist() == [[3, 2], [1, 2]]
    iou_bg = 3 / (3 + 2 + 1)
    iou_fg = 2 / (2 + 2 + 1)
    assert miou_from_confusion(cm) == pytest.approx((iou_bg + iou_fg) / 2)


def test_miou_is_from_the_accumulated_matrix_not_a_mean_of_images():
    # image 1 has a tiny missed object; image 2 a big hit: per-image mean differs from the split's mIoU
    t1, p1 = np.array([1, 0, 0, 0]), np.array([0, 0, 0, 0])
    t2, p2 = np.array([1, 1, 1, 0]), np.array([1, 1, 1, 0])
    split = miou_from_confusion(confusion_matrix(np.r_[p1, p2], np.r_[t1, t2]))
    per_image = np.mean([miou_from_confusion(confusion_matrix(p, t)) for p, t in ((p1, t1), (p2, t2))])
    assert split == pytest.approx(((4 / 5) + (3 / 4)) / 2)
    assert split != pytest.approx(per_image)


def test_all_background_prediction_scores_half_the_background_iou():
    target = np.array([0, 0, 0, 1])
    assert miou_from_confusion(confusion_matrix(np.zeros(4, int), target)) == pytest.approx(0.75 / 2)


def test_seed_sd_is_the_sample_sd_and_none_for_one_seed():
    assert seed_sd([0.60, 0.62]) == pytest.approx(0.02 / 2**0.5)  # population sd would be 0.01
    assert seed_sd([0.5, 0.5, 0.5]) == 0.0
    assert seed_sd(iter([0.7])) is None and seed_sd([]) is None
