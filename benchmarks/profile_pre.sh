#!/usr/bin/env bash
# Nsight Compute of the preprocessing kernels (session 18): speed of light, occupancy, launch
# and warp-state counters of each kernel of one index-table build at N, after warm-up; with
# PREV=name also the same build by an earlier module (s2o_compile/kernels/name.py) first.
# KERNELS=regex profiles those kernels only, FULL=1 with every section (`--set full`: memory
# workload tables, source counters), into pre_N_full.txt (session 21).
#   bash benchmarks/profile_pre.sh [N]      -> $OUT/pre_N.txt
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; N=${1:-131072}; PREV=${PREV:-}
KERNELS=${KERNELS:-_pool_queries|_prefix_scores|_keys_kernel|_block_}; FULL=${FULL:-}
SECTIONS="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats"
tag=""; [ -n "$FULL" ] && { SECTIONS="--set full"; tag="_full"; }
# a build's launches that KERNELS matches (twice with PREV): skipped once (the warm-up), then
# profiled once; the keys kernel's name follows KEYS_ONE_WARP
n=$(python -c "
import re; from s2o_compile.kernels import triton_s2o as T
names = ['_pool_queries', '_prefix_scores', '_warp_keys' if T.KEYS_ONE_WARP else '_block_keys',
         '_block_starts', '_block_rank_scatter']
print(sum(bool(re.search('$KERNELS', k + '_kernel')) for k in names) * (2 if '$PREV' else 1))")
ncu --clock-control none $SECTIONS -k "regex:$KERNELS" -s $n -c $n \
  python - $N "$PREV" <<'PY' 2>&1 | grep -v "^==PROF" > "$OUT/pre_$N$tag.txt"
import importlib, sys, torch
from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv
N, prev = int(sys.argv[1]), sys.argv[2]
mods = ([importlib.import_module(f"s2o_compile.kernels.{prev}")] if prev else []) + [T]
q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
cfg = S2OConfig(min_seq_len=0, threshold=0.8)
for m in mods:  # warm-up (compiles): the first n launches are skipped
    m.build_index_table(q, k, 128 ** -0.5, cfg)
for m in mods:
    m.build_index_table(q, k, 128 ** -0.5, cfg)
torch.cuda.synchronize()
PY
grep -E "^  _|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Grid Size|Block Size|Registers Per|Issued Warp Per|No Eligible|Warp Cycles Per Issued" "$OUT/pre_$N$tag.txt" | head -120
