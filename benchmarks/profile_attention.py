"""Profile target for the attention kernel: builds the table, runs the kernel twice, and writes
its PTX and SASS (with register and spill counts) to $OUT. Meant to run under Nsight Compute:

    ncu -k regex:_s2o_attention_kernel -c 1 -s 1 --section SpeedOfLight --section Occupancy \
        python benchmarks/profile_attention.py 32768 0.6

(-s 1 skips the first, compiling launch). Results of session 3: benchmarks/results/session3/ncu_*.
"""
import collections
import os
import re
import sys

import torch

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def main():
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 32768
    tau = float(sys.argv[2]) if len(sys.argv) > 2 else 0.6
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    cfg = S2OConfig(min_seq_len=0, threshold=tau)
    table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
    for _ in range(2):
        T.attention_with_table(q, k, v, table, offsets, 128 ** -0.5, cfg)
    torch.cuda.synchronize()
    out = os.environ.get("OUT", ".")
    for entry in T._s2o_attention_kernel.device_caches.values():
        cache = entry[0] if isinstance(entry, tuple) else entry
        for kern in cache.values():
            print("registers", kern.n_regs, "spills", kern.n_spills)
            open(os.path.join(out, "attention_kernel.ptx"), "w").write(kern.asm["ptx"])
            sass = kern.asm["sass"]
            open(os.path.join(out, "attention_kernel.sass"), "w").write(sass)
            ops = collections.Counter(re.sub(r"^@!?U?P[T0-9]+\s+", "", line.split("\t")[1].strip())
                                      .split(" ")[0] for line in sass.splitlines()
                                      if line.count("\t") and re.match(r"[0-9a-f-]+:", line))
            print("static SASS opcodes:", ops.most_common(20))


if __name__ == "__main__":
    main()
