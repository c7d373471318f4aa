#!/usr/bin/env bash
# Hardware counters of the attention kernel's walk (Nsight Compute, session 11): the full section
# set plus per-SASS-instruction stall samples, for the op's defaults at 32K (tau 0.9) and 128K
# (tau 0.8), and cuDNN's dense kernel at 32K for comparison. Results under $OUT:
#   walk32k.txt / walk128k.txt / dense32k.txt   ncu --page details
#   walk32k_source.csv / walk128k_source.csv     ncu --page source --print-source sass (stall samples)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; REP=/tmp/ncu; mkdir -p $REP
NCU="ncu --clock-control none --set full --import-source no"
for run in "32768 0.9 walk32k" "131072 0.8 walk128k"; do
  set -- $run
  OUT=/tmp $NCU -k regex:_s2o_attention_kernel -s 1 -c 1 -f -o $REP/$3 \
    python benchmarks/profile_attention.py $1 $2 2>&1 | grep -v "^==PROF" | tail -3
  ncu --import $REP/$3.ncu-rep --page details > "$OUT/$3.txt" 2>&1
  ncu --import $REP/$3.ncu-rep --page source --csv --print-source sass > "$OUT/$3_source.csv" 2>&1
done
$NCU -k regex:"sdpa|fmha|flash|attn" -s 2 -c 1 -f -o $REP/dense32k python - <<'PY' 2>&1 | grep -v "^==PROF" | tail -3
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from s2o_compile.workload import structured_qkv
q, k, v = structured_qkv(1, 32, 8, 32768, 128, device="cuda")
k, v = (t.repeat_interleave(4, dim=1) for t in (k, v))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(4):
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
torch.cuda.synchronize()
PY
ncu --import $REP/dense32k.ncu-rep --page details > "$OUT/dense32k.txt" 2>&1
ls -la "$OUT"
