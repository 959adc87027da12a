#!/usr/bin/env bash
# nanoGPT's bench.py before and after the project's train_throughput.py, DEPTH 6..14, one call.
# Needs nanoGPT's bench.py, model.py and configurator.py in .nanogpt_ref/ (benchmarks/README.md).
#   benchmarks/vs_nanogpt.sh                      # all five depths, logs in bench_out/
#   DEPTHS=6,12 OUT=$OUT benchmarks/vs_nanogpt.sh --project-args "--variants base --fp8-head both"
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
exec python3 benchmarks/vs_nanogpt.py --ref "${NANOGPT_REF:-.nanogpt_ref}" \
    --depths "${DEPTHS:-6,8,10,12,14}" --out "${OUT:-bench_out}" "$@"
