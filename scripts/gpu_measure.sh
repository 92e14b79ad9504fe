#!/usr/bin/env bash
# Every GPU figure issue 8 asks for, on a GPU machine, logged to OUT/gpu_measure-PART.log (OUT defaults to
# $OUT, as the device tool's `run` provides; only a few files come back from it, so one log per part).
#   throughput: DELBench vs the reference and MFU for each GPU tier as it is (OUT/pretrain_throughput.json),
#               then the evaluation-time arithmetic from those rates; under 4 min on an H100 in session 1
#   graph:      the same, each tier as is and with the step replayed as one CUDA graph, side by side
#               (OUT/pretrain_throughput_graph.json), and the evaluation time with each; not yet timed
#   profile:    where paper-fast's and paper's steps spend their time, eager and graphed
#   tests:      the GPU-only tests (the CUDA graph trains as the eager step; baselines on CUDA match CPU)
# Usage: scripts/gpu_measure.sh [OUT] [throughput|graph|profile|tests|all]   (default: all). Each part is
# meant to fit a 10-minute device call; the log and the JSON are written as each case ends, so a part cut
# off at its limit still returns what it measured. With 30 minutes of device time: graph, profile, tests
# (graph holds throughput's figures too; throughput is the fallback).
set -uo pipefail
out=$(realpath -m "${1:-${OUT:?usage: scripts/gpu_measure.sh OUT [PART]}}")
part=${2:-all}
cd "$(dirname "$0")/.." && export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # no install needed
case $part in throughput | graph | profile | tests | all) ;; *) echo "unknown part '$part': throughput, graph, profile, tests or all" >&2; exit 2 ;; esac
mkdir -p "$out"
log="$out/gpu_measure-$part.log"
status=0
step() {  # step CMD...: run CMD, its output to the terminal and the log; remember a failure
  echo "== $*" | tee -a "$log"
  PYTHONUNBUFFERED=1 "$@" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "!! failed: $*" | tee -a "$log"; status=1; }
}
if [ "$part" = throughput ] || [ "$part" = all ]; then
  step python bench/pretrain_throughput.py --quick --no-graph --json "$out/pretrain_throughput.json"
  [ -f "$out/pretrain_throughput.json" ] &&
    step python bench/evaluation_time.py --pretrain-from "$out/pretrain_throughput.json" --steps 20
fi
if [ "$part" = graph ] || [ "$part" = all ]; then
  step python bench/pretrain_throughput.py --quick --json "$out/pretrain_throughput_graph.json"
  [ -f "$out/pretrain_throughput_graph.json" ] &&  # prints the graphed total beside the eager one
    step python bench/evaluation_time.py --pretrain-from "$out/pretrain_throughput_graph.json" --steps 20
fi
if [ "$part" = profile ] || [ "$part" = all ]; then
  for tier in paper-fast paper; do
    step python bench/profile_pretrain.py --tier "$tier"
    step python bench/profile_pretrain.py --tier "$tier" --graph
  done
fi
if [ "$part" = tests ] || [ "$part" = all ]; then
  step python -m pytest -q -m gpu tests/test_cuda_graph.py tests/test_baselines_gpu.py
fi
exit $status
