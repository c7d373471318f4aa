#!/usr/bin/env bash
# L2 and memory counters (Nsight Compute) of the op's pair walk and of cuDNN's causal attention
# at the same N (session 17): is the walk bound by the L2's bandwidth as cuDNN is? Speed of
# light, memory workload, warp states and occupancy; one launch each, after warm-up.
#   bash benchmarks/profile_l2.sh [N]      -> $OUT/l2_pair_N.txt, $OUT/l2_cudnn_N.txt
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; N=${1:-32768}
SECTIONS="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats"
for who in pair cudnn; do
  if [ $who = pair ]; then K="regex:_s2o_pair_kernel"; else K="regex:sdpa|fmha|flash|attn"; fi
  ncu --clock-control none $SECTIONS -k "$K" -s 2 -c 1 python - $N $who <<'PY' 2>&1 \
    | grep -v "^==PROF" > "$OUT/l2_${who}_$N.txt"
import sys, torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T, walk as W
from s2o_compile.workload import structured_qkv
N, who = int(sys.argv[1]), sys.argv[2]
q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
if who == "pair":
    cfg = S2OConfig(min_seq_len=0, threshold=0.8)
    table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
    run = lambda: W.attention(q, k, v, table, offsets, 128 ** -0.5, cfg)
else:
    def run():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
for _ in range(4):
    run()
torch.cuda.synchronize()
PY
  grep -E "Kernel|_kernel|sdpa|L2 Cache Throughput|DRAM Throughput|Memory Throughput|L2 Hit|L1/TEX Hit|Duration|Compute \(SM\)|Achieved Occupancy|Registers Per|Shared Memory Config" "$OUT/l2_${who}_$N.txt" | head -30
done
