"""The warp-specialized Gluon walk refuses configurations whose kernel spills (they hung).

    python benchmarks/gluon_spill_check.py ws:tpw=2 ws:tpw=4,regs=40 ws:tpw=4

For each variant (gluon_ab.py's syntax): two of gluon_ab's checks against the Triton kernel, or
the RuntimeError that attention_gluon raises instead of launching a kernel that spills.
Session 10: in a local sm_90 compile, only the two configurations that hung in session 9 spill
(TPW_ROWS 2: 18 local-memory instructions; 40 producer registers: 6; the others: none).
"""
import sys

import torch

import gluon_ab as A

for spec in sys.argv[1:]:
    name, kw = A.parse_variant(spec)
    print("variant", name, flush=True)
    try:
        A._check(1, 8, 2, 4096, 128, torch.bfloat16, 0.5, gluon_kw=kw)
        A._check(2, 8, 2, 8192 + 37, 128, torch.bfloat16, 0.05, gluon_kw=kw)
    except RuntimeError as e:
        print("  refused:", e, flush=True)
