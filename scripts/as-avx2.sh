#!/usr/bin/env bash
# Run a command with torch's CPU libraries held to AVX2: ATen's kernels, oneDNN, MKL and fbgemm
# run what they would on an AVX2 CPU, and ttsopt's per-CPU choices (measure.env.cpu_flags) see an
# AVX2 CPU. For working on the AVX2 defaults from an AVX-512 machine; its clock, caches and memory
# stay its own, so records say "capped" beside the units and are not an AVX2 CPU's numbers.
#   bash scripts/as-avx2.sh .venv/bin/python scripts/flow-steps.py baseline fast-s3gen
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
exec "$@"
