#!/usr/bin/env bash
# The README's baselines table, with every (seed, method, ratio) evaluated in its own process so that a GPU
# (or a many-core machine) runs them side by side; the rows are then merged into OUT/seed-S/baselines.json
# and rendered by `delbench baselines`, which reuses every row already evaluated. With several seeds the
# table in OUT is each row's mean ± sd over them (and the paired difference to random), as
# `delbench baselines --seeds` writes it.
# Usage: scripts/baselines_parallel.sh OUT [DEVICE] [TIER] [SEEDS]   (defaults: cuda, synth-tiny, 0)
set -euo pipefail
out=${1:?usage: scripts/baselines_parallel.sh OUT [DEVICE] [TIER] [SEEDS]}
device=${2:-cuda}
tier=${3:-synth-tiny}
seeds=${4:-0}
ratios=${RATIOS:-0.05,0.2,0.5}
methods=${METHODS:-random,meddel,semdedup,hard,prototype}
export DELBENCH_CACHE=${DELBENCH_CACHE:-$out/cache} PYTHONUNBUFFERED=1
db() { python3 -m delbench "$@"; }
[ -f "$out/pool/pool.json" ] || db synth --out "$out/pool" >/dev/null 2>&1
IFS=, read -ra seed_list <<<"$seeds"
IFS=, read -ra ratio_list <<<"$ratios"
IFS=, read -ra method_list <<<"$methods"
pids=()
for seed in "${seed_list[@]}"; do
  parts="$out/parts/seed-$seed"
  mkdir -p "$parts"
  # The embeddings first (the full-pool pretraining with this seed): every method of the seed reads them.
  db embed --pool "$out/pool" --tier "$tier" --seed "$seed" --device "$device" 2>&1 | tail -1
  db baselines --pool "$out/pool" --tier "$tier" --ratios "${ratio_list[0]}" --methods random --seeds "$seed" \
    --out "$parts/reference" --device "$device" --quiet >"$parts/reference.log" 2>&1 & pids+=($!)
  for method in "${method_list[@]}"; do
    for ratio in "${ratio_list[@]}"; do
      db baselines --pool "$out/pool" --tier "$tier" --ratios "$ratio" --methods "$method" --seeds "$seed" \
        --no-reference-rows --out "$parts/$method-$ratio" --device "$device" --quiet \
        >"$parts/$method-$ratio.log" 2>&1 & pids+=($!)
    done
  done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { tail -n 5 "$out"/parts/*/*.log; exit 1; }
python3 - "$out" "$seeds" <<'PY'
import json, sys
from pathlib import Path
out, seeds = Path(sys.argv[1]), sys.argv[2].split(",")
for seed in seeds:
    docs = [json.loads(p.read_text()) for p in sorted((out / "parts" / f"seed-{seed}").glob("*/baselines.json"))]
    rows = {}
    for doc in docs:
        for row in doc["rows"]:
            rows.setdefault(row["selection_hash"] or row["method"], row)
    merged = {k: v for k, v in docs[0].items() if k != "rows"} | {"rows": list(rows.values())}
    # One seed's table lives in OUT itself, several in OUT/seed-S: where `delbench baselines` looks.
    target = out if len(seeds) == 1 else out / f"seed-{seed}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "baselines.json").write_text(json.dumps(merged, indent=2) + "\n")
PY
db baselines --pool "$out/pool" --tier "$tier" --ratios "$ratios" --methods "$methods" --seeds "$seeds" \
  --out "$out" --device "$device" --quiet
cat "$out/baselines.md"
