#!/usr/bin/env bash
# The README's baselines table, with every (method, ratio) evaluated in its own process so that a GPU (or a
# many-core machine) runs them side by side; the rows are then merged and rendered by `delbench baselines`,
# which reuses every row already evaluated. Usage: scripts/baselines_parallel.sh OUT [DEVICE] [TIER]
set -euo pipefail
out=${1:?usage: scripts/baselines_parallel.sh OUT [DEVICE] [TIER]}
device=${2:-cuda}
tier=${3:-synth-tiny}
mkdir -p "$out/parts"
export DELBENCH_CACHE=${DELBENCH_CACHE:-$out/cache} PYTHONUNBUFFERED=1
db() { python3 -m delbench "$@"; }
[ -f "$out/pool/pool.json" ] || db synth --out "$out/pool" >/dev/null 2>&1
db embed --pool "$out/pool" --tier "$tier" --device "$device" 2>&1 | tail -1
pids=()
db baselines --pool "$out/pool" --tier "$tier" --ratios 0.05 --methods random --out "$out/parts/reference" \
  --device "$device" --quiet >"$out/parts/reference.log" 2>&1 & pids+=($!)
for method in random meddel semdedup hard prototype; do
  for ratio in 0.05 0.2 0.5; do
    db baselines --pool "$out/pool" --tier "$tier" --ratios "$ratio" --methods "$method" --no-reference-rows \
      --out "$out/parts/$method-$ratio" --device "$device" --quiet >"$out/parts/$method-$ratio.log" 2>&1 & pids+=($!)
  done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { tail -n 5 "$out"/parts/*.log; exit 1; }
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
docs = [json.loads(p.read_text()) for p in sorted((out / "parts").glob("*/baselines.json"))]
rows = {}
for doc in docs:
    for row in doc["rows"]:
        rows.setdefault(row["selection_hash"] or row["method"], row)
merged = {k: v for k, v in docs[0].items() if k != "rows"} | {"rows": list(rows.values())}
(out / "baselines.json").write_text(json.dumps(merged, indent=2) + "\n")
PY
db baselines --pool "$out/pool" --tier "$tier" --ratios 0.05,0.2,0.5 --out "$out" --device "$device" --quiet
cat "$out/baselines.md"
