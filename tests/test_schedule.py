import numpy as np
import pytest

from evaluator.schedule import SampleStream, epochs_seen, lr_at
from evaluator.tier import load_tier

# Paper Table 2: actual subset sizes and the table's rounded epochs (the DataDEL paper).
TABLE2 = [(88_282, 200), (43_484, 400), (28_352, 600), (16_789, 1_000), (9_055, 2_000), (4_461, 4_000)]
# What the fixed budget gives for those sizes (the DataDEL paper).
DESIGN_EPOCHS = [200, 406, 623, 1_052, 1_950, 3_958]


def test_paper_budget_is_88282_times_200():
    tier = load_tier("paper")
    assert tier.pretrain.samples_seen == 88_282 * 200 == 17_656_400
    assert tier.pretrain.steps * tier.pretrain.batch_size == tier.pretrain.samples_seen


@pytest.mark.parametrize(
    ("n", "table_epochs", "design_epochs"), [(*t, d) for t, d in zip(TABLE2, DESIGN_EPOCHS, strict=False)]
)
def test_fixed_budget_epochs_for_table2_sizes(n, table_epochs, design_epochs):
    tier = load_tier("paper")
    budget = tier.pretrain.samples_seen
    epochs = epochs_seen(n, budget)
    assert round(epochs) == design_epochs
    assert abs(epochs - table_epochs) / table_epochs < 0.06
    # the optimizer steps do not depend on n; the samples they see add up to the budget exactly
    stream = SampleStream(n, tier.pretrain.batch_size, seed=0)
    assert tier.pretrain.steps * len(stream.batch(0)) == budget


def test_stream_visits_every_sample_once_per_epoch_and_spans_epoch_ends():
    n, batch = 10, 4
    stream = SampleStream(n, batch, seed=3)
    seen = np.concatenate([stream.batch(s) for s in range(5)])  # 20 samples = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # a fresh permutation each epoch


def test_stream_is_a_pure_function_of_step():
    a, b = SampleStream(37, 8, seed=1), SampleStream(37, 8, seed=1)
    assert np.array_equal(a.batch(123), b.batch(123))
    assert not np.array_equal(a.batch(123), SampleStream(37, 8, seed=2).batch(123))


def test_lr_warms_up_then_decays_to_min():
    total, peak, warmup = 100, 1.0, 10
    lrs = [lr_at(s, total, peak, warmup) for s in range(total)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lr_at(total, total, peak, warmup, min_lr=0.01) == pytest.approx(0.01)
