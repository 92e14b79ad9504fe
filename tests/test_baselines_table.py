"""`delbench baselines` table assembly and resume, with a stand-in for the protocol's evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.baselines.methods import Features
from evaluator.baselines.table import run_baselines, run_baselines_over_seeds
from evaluator.metrics import normdel
from evaluator.store import open_pool
from evaluator.synth import generate
from evaluator.tier import load_tier

MICRO = "tests/tiers/micro.json"


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool") / "pool"
    generate(out, seed=0, size=96, resolution=32)
    return open_pool(out)


class FakeEvaluate:
    """Scores a selection by a fixed function of its size, and counts the calls."""

    def __init__(self, seed_effect: float = 0.0, selection_effect: float = 0.0):
        self.calls = []
        self.seed_effect = seed_effect  # mIoU added per unit of seed, so that seeds differ
        self.selection_effect = selection_effect  # times the first selected index mod 10: selections differ

    def __call__(self, *, pool_dir, selection, tasks_dir, tier, seed, cache_dir, progress, device):
        self.calls.append((selection.selection_hash if selection else None, seed))
        n = selection.n if selection else 0
        ratio = n / 96
        miou = 0.4 + 0.1 * ratio + self.seed_effect * seed
        if n:
            miou += self.selection_effect * (int(selection.indices[0]) % 10)
        return {
            "n_selected": n,
            "retained_fraction": ratio,
            "mean_miou": miou,
            "mean_normdel": normdel(miou, ratio) if n else None,
            "datasets": {"kvasir-seg": {"miou": miou}},
            "selection_hash": selection.selection_hash if selection else None,
            "tier_hash": tier.hash,
        }


def table_kwargs(pool, tmp_path, fake, methods=("random",), ratios=(0.25,)):
    """run_baselines' arguments with fixed random features and `fake` for the protocol."""
    rng = np.random.default_rng(0)
    features = Features(
        pool.size, rng.standard_normal((pool.size, 8)).astype(np.float32), rng.random(pool.size)
    )
    return dict(
        pool=pool,
        tier=load_tier(MICRO),
        methods=list(methods),
        ratios=list(ratios),
        out_dir=tmp_path / "out",
        tasks_dir=pool.path / "tasks",
        cache_dir=tmp_path / "cache",
        features=features,
        evaluate_fn=fake,
    )


def test_table_rows_files_and_resume(pool, tmp_path):
    fake = FakeEvaluate()
    kwargs = table_kwargs(pool, tmp_path, fake, ["random", "prototype", "semdedup"], [0.25, 0.5])
    tier = kwargs["tier"]
    table = run_baselines(**kwargs)
    assert [(r["method"], r["ratio_asked"]) for r in table.rows] == [
        ("full pool", 1.0),
        ("no pretraining", None),
        ("random", 0.25),
        ("random", 0.5),
        ("prototype", 0.25),
        ("prototype", 0.5),
        ("semdedup", 0.25),
        ("semdedup", 0.5),
    ]
    assert len(fake.calls) == 8
    full, floor = table.rows[0], table.rows[1]
    assert full["n"] == 96 and full["R"] == 1.0 and floor["n"] == 0 and floor["mean_normdel"] is None
    for row in table.rows[2:]:
        assert abs(row["R"] - row["ratio_asked"]) <= 0.01
        ids = (
            (tmp_path / "out" / "selections" / f"{row['method']}-{row['ratio_asked']:g}.txt")
            .read_text()
            .split()
        )
        assert len(ids) == row["n"] and set(ids) <= set(pool.ids)
    doc = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert doc["tier_hash"] == tier.hash and len(doc["rows"]) == 8
    markdown = (tmp_path / "out" / "baselines.md").read_text()
    assert "| random | 25% | 25.00% | 24 | 42.50 |" in markdown
    assert "| no pretraining | — | 0.00% | 0 | 40.00 | — |" in markdown

    # A second run finds every row in baselines.json and evaluates nothing.
    again = FakeEvaluate()
    table2 = run_baselines(**{**kwargs, "evaluate_fn": again})
    assert again.calls == [] and [r["mean_miou"] for r in table2.rows] == [r["mean_miou"] for r in table.rows]


class Interrupt(Exception):
    pass


def test_a_narrower_or_interrupted_run_loses_no_earlier_row(pool, tmp_path):
    """Adding a ratio rewrites the table row by row; the earlier rows it has not reached yet, and those a
    later run does not ask for, stay in baselines.json and are reused, never evaluated again."""
    first = FakeEvaluate(selection_effect=0.001)
    kwargs = table_kwargs(pool, tmp_path, first, ["random", "prototype"], [0.25, 0.5])
    table = run_baselines(**kwargs)
    by_hash = {r["selection_hash"]: r["mean_miou"] for r in table.rows}
    assert len(by_hash) == 6

    class StopsAtFirstEvaluation(FakeEvaluate):
        def __call__(self, **kw):
            raise Interrupt  # Ctrl-C during the first new evaluation

    # A wider run (a third ratio), interrupted at its first new evaluation: by then it has rewritten the
    # file with the rows it reached (the two reference rows, random at 25 %), and must keep the others.
    with pytest.raises(Interrupt):
        run_baselines(**{**kwargs, "ratios": [0.25, 0.75, 0.5], "evaluate_fn": StopsAtFirstEvaluation()})
    doc = json.loads((tmp_path / "out" / "baselines.json").read_text())
    stored = {r["selection_hash"]: r["mean_miou"] for r in doc["rows"] + doc.get("earlier_rows", [])}
    assert stored == by_hash

    # A narrower run (one ratio) reuses its rows and keeps the other ratio's as earlier rows ...
    again = FakeEvaluate(selection_effect=0.001)
    narrow = run_baselines(**{**kwargs, "ratios": [0.25], "evaluate_fn": again})
    assert again.calls == [] and len(narrow.rows) == 4
    doc = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert len(doc["rows"]) == 4 and len(doc["earlier_rows"]) == 2
    assert "| random | 50% |" not in (tmp_path / "out" / "baselines.md").read_text()
    # ... which the full run then finds again: nothing is evaluated twice.
    last = FakeEvaluate(selection_effect=0.001)
    full = run_baselines(**{**kwargs, "evaluate_fn": last})
    assert last.calls == [] and {r["selection_hash"]: r["mean_miou"] for r in full.rows} == by_hash
    assert "earlier_rows" not in json.loads((tmp_path / "out" / "baselines.json").read_text())


def test_several_seeds_give_mean_and_sd_per_row(pool, tmp_path):
    fake = FakeEvaluate(seed_effect=0.01, selection_effect=0.001)
    kwargs = table_kwargs(pool, tmp_path, fake, ["random", "prototype"])
    lines = []
    table = run_baselines_over_seeds(seeds=[0, 1, 2], log=lines.append, **kwargs)
    assert [line.split(";")[0] for line in lines if "for the other seeds" in line] == [
        "seed 0 done",
        "seed 1 done",
    ]
    assert sorted(seed for _, seed in fake.calls) == [0] * 4 + [1] * 4 + [2] * 4
    # Each seed draws its own random selection: three different hashes, each evaluated with its seed.
    per_seed = {}
    for seed in (0, 1, 2):  # every seed's own table stays, and resumes on its own
        doc = json.loads((tmp_path / "out" / f"seed-{seed}" / "baselines.json").read_text())
        assert doc["seed"] == seed and len(doc["rows"]) == 4
        per_seed[seed] = {row["method"]: row["mean_miou"] for row in doc["rows"]}
    rows = {row["method"]: row for row in table.rows}
    random_row, prototype = rows["random"], rows["prototype"]
    assert len(set(random_row["selection_hashes"])) == 3
    expected = [per_seed[s]["random"] for s in (0, 1, 2)]
    assert random_row["mean_miou"]["values"] == expected
    assert random_row["mean_miou"]["mean"] == pytest.approx(sum(expected) / 3)
    assert random_row["mean_miou"]["sd"] == pytest.approx(float(np.std(expected, ddof=1)))
    assert random_row["n"] == {"mean": 24, "sd": 0.0, "values": [24, 24, 24]}
    # The paired difference: prototype minus random, seed by seed; the shared seed effect cancels.
    differences = [per_seed[s]["prototype"] - per_seed[s]["random"] for s in (0, 1, 2)]
    assert prototype["miou_vs_random"]["values"] == pytest.approx(differences)
    assert prototype["miou_vs_random"]["sd"] < prototype["mean_miou"]["sd"]
    assert "miou_vs_random" not in random_row and "miou_vs_random" not in rows["full pool"]
    floor = rows["no pretraining"]
    assert floor["mean_normdel"] is None and floor["mean_miou"]["mean"] == pytest.approx(0.41)
    doc = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert doc["seeds"] == [0, 1, 2] and len(doc["rows"]) == 4
    markdown = (tmp_path / "out" / "baselines.md").read_text()
    assert "seeds 0, 1, 2: mean ± sd" in markdown
    assert "mIoU − random's, paired by seed (points) |" in markdown
    mean, sd = 100 * random_row["mean_miou"]["mean"], 100 * random_row["mean_miou"]["sd"]
    assert f"| random | 25% | 25.00% | 24 | {mean:.2f} ± {sd:.2f} | " in markdown
    assert "| no pretraining | — | 0.00% | 0 | 41.00 ± 1.00 | — | — |" in markdown
    gap = prototype["miou_vs_random"]
    assert f" | {100 * gap['mean']:+.2f} ± {100 * gap['sd']:.2f} |" in markdown

    again = FakeEvaluate(seed_effect=0.01)
    run_baselines_over_seeds(seeds=[0, 1, 2], **{**kwargs, "evaluate_fn": again})
    assert again.calls == []
    with pytest.raises(ValueError, match="repeats a seed"):
        run_baselines_over_seeds(seeds=[0, 0], **kwargs)


def test_one_seed_table_is_reused_when_more_seeds_are_asked(pool, tmp_path):
    first = FakeEvaluate(seed_effect=0.01)
    run_baselines_over_seeds(seeds=[0], **table_kwargs(pool, tmp_path, first))
    one_seed = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert one_seed["seed"] == 0 and len(first.calls) == 3

    lines, more = [], FakeEvaluate(seed_effect=0.01)
    table = run_baselines_over_seeds(seeds=[0, 1], log=lines.append, **table_kwargs(pool, tmp_path, more))
    assert sorted(seed for _, seed in more.calls) == [1, 1, 1]  # seed 0's rows came from its table
    assert any("moved to" in line and "seed-0" in line for line in lines)
    moved = json.loads((tmp_path / "out" / "seed-0" / "baselines.json").read_text())
    assert moved["rows"] == one_seed["rows"]
    assert (tmp_path / "out" / "seed-0" / "selections" / "random-0.25.txt").exists()
    assert json.loads((tmp_path / "out" / "baselines.json").read_text())["seeds"] == [0, 1]
    assert {r["method"]: r["mean_miou"]["values"][0] for r in table.rows} == {
        r["method"]: r["mean_miou"] for r in one_seed["rows"]
    }


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        ([0, 1], [0], "holds the table over seeds [0, 1]; seed 0's own table is"),
        ([1], [0], "is the table of tier micro"),  # another seed's one-seed table
        ([1], [0, 2], "seed 1, not of tier micro"),  # one seed's table, not among the seeds asked
    ],
)
def test_another_table_in_out_is_refused_and_kept(pool, tmp_path, first, then, message):
    run_baselines_over_seeds(seeds=first, **table_kwargs(pool, tmp_path, FakeEvaluate()))
    stored = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.json")}
    fake = FakeEvaluate()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_baselines_over_seeds(seeds=then, **table_kwargs(pool, tmp_path, fake))
    assert fake.calls == []  # refused before any evaluation
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.json")} == stored


def test_another_tier_version_in_out_is_refused(pool, tmp_path):
    run_baselines_over_seeds(seeds=[0], **table_kwargs(pool, tmp_path, FakeEvaluate()))
    path = tmp_path / "out" / "baselines.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "tier_hash": "0123456789abcdef"}))
    with pytest.raises(ValueError, match=r"tier micro \(hash 0123456789ab\), seed 0, not of tier micro"):
        run_baselines_over_seeds(seeds=[0], **table_kwargs(pool, tmp_path, FakeEvaluate()))
    path.write_text("{ not json")
    with pytest.raises(ValueError, match="is not a baselines table"):
        run_baselines_over_seeds(seeds=[0], **table_kwargs(pool, tmp_path, FakeEvaluate()))
    assert path.read_text() == "{ not json"
