"""One downstream task finetuned under several finetune settings, from a pretrained and from a random encoder,
over several seeds, side by side: does a setting let the task tell pretraining apart?

    .venv/bin/python bench/finetune_probe.py --pool data/synth --task etis \\
        --encoder runs/baselines-tiny/cache/encoders/KEY/encoder.pt --set lr=1e-3 --set lr=2e-3 --set steps=150

The first row is the tier as it is; each `--set FIELD=VALUE[,FIELD=VALUE]` adds a row with the tier's
`finetune` section changed. A task a setting cannot learn scores the all-background mIoU, printed first.
A probe for tuning a tier, not part of the protocol: a changed tier is a new tier version, to be re-measured
with bench/synth_study.py before it is adopted.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluator.cpu_threads import set_default_wait_policy  # noqa: E402

set_default_wait_policy()  # what `delbench` runs with; before torch loads

import torch  # noqa: E402

from evaluator.finetune import finetune  # noqa: E402
from evaluator.protocol import load_encoder  # noqa: E402
from evaluator.store import open_task  # noqa: E402
from evaluator.tier import Tier, load_tier  # noqa: E402


def parse_setting(text: str) -> dict:
    setting = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        value = value.strip()
        if value.lower() in ("true", "false"):
            setting[key.strip()] = value.lower() == "true"
        else:
            setting[key.strip()] = int(value) if value.isdigit() else float(value)
    return setting


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=Path, required=True, help="a pool with tasks/ (delbench synth)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--encoder", type=Path, required=True, help="a pretrained encoder.pt of this tier")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE[,...]")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    base = load_tier(args.tier)
    try:
        pretrained = load_encoder(args.encoder, base)  # checks that it was pretrained under this tier
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    task = open_task(args.pool / "tasks" / args.task, base.resolution)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.task}: all-background mIoU {(1.0 - task.test.masks.mean()) / 2:.3f}; seeds {seeds}")
    for setting in [{}] + [parse_setting(s) for s in args.set]:
        raw = copy.deepcopy(base.to_dict())
        raw["finetune"].update(setting)
        tier = Tier.from_dict(raw)
        label = ", ".join(f"{k}={v}" for k, v in setting.items()) or f"{base.name} as is"
        for source in ("pretrained", "random init"):
            scores = []
            for seed in seeds:
                # finetuning changes the encoder in place: each run starts from a fresh copy
                encoder = (
                    copy.deepcopy(pretrained) if source == "pretrained" else load_encoder(None, tier, seed)
                )
                result = finetune(
                    encoder=encoder, task=task, tier=tier, seed=seed, device=torch.device(args.device)
                )
                scores.append(result["miou"])
            print(f"  {label:<24} {source:<12} " + " ".join(f"{m:.3f}" for m in scores)
                  + f"   mean {statistics.mean(scores):.3f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
