#!/usr/bin/env bash
# Hardware counters of the op's Gluon pair walk (Nsight Compute, session 14): the full section set
# (speed of light, memory and L2 hit rates, tensor pipe, warp states) and per-SASS-instruction
# stall samples, at 32K and 128K (tau 0.8, the op's table). Results under $OUT:
#   pair32k.txt / pair128k.txt                 ncu --page details
#   pair32k_source.csv / pair128k_source.csv   stall samples (summarize: benchmarks/ncu_stalls.py)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; REP=/tmp/ncu; mkdir -p $REP
NCU="ncu --clock-control none --set full --import-source no"
for run in "32768 pair32k" "131072 pair128k"; do
  set -- $run
  $NCU -k regex:_s2o_pair_kernel -s 1 -c 1 -f -o $REP/$2 python - $1 <<'PY' 2>&1 | grep -v "^==PROF" | tail -3
import sys, torch
from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T, walk as W
from s2o_compile.workload import structured_qkv
N = int(sys.argv[1])
q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
cfg = S2OConfig(min_seq_len=0, threshold=0.8)
table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
for _ in range(2):
    W.attention(q, k, v, table, offsets, 128 ** -0.5, cfg)
torch.cuda.synchronize()
PY
  ncu --import $REP/$2.ncu-rep --page details > "$OUT/$2.txt" 2>&1
  ncu --import $REP/$2.ncu-rep --page source --csv --print-source sass > "$OUT/$2_source.csv" 2>&1
done
ls -la "$OUT"
