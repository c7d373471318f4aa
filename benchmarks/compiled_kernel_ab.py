"""Why is the op's Triton walk faster under torch.compile than launched eagerly (H100, session 13:
compiled op 24.4 ms against 28.0 eager at 128K, tau 0.8)? The attention kernel alone on one
table, eager launch against Inductor's re-emitted kernel, alternating, and the Triton cache
entries of both (compile metadata, PTX) kept under $OUT for a diff.

    TRITON_CACHE_DIR=$OUT/cache python benchmarks/compiled_kernel_ab.py --seq-len 131072
"""
import argparse

import torch
import triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=131072)
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    N, scale = args.seq_len, 128 ** -0.5
    cfg = S2OConfig(threshold=args.tau, min_seq_len=0)
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    table, offsets = T.build_index_table(q, k, scale, cfg)

    def eager(q, k, v, table, offsets):
        return T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    compiled = torch.compile(eager)
    runs = {"triton eager": lambda: eager(q, k, v, table, offsets),
            "triton compiled": lambda: compiled(q, k, v, table, offsets),
            "pair eager": lambda: GP.attention_pair(q, k, v, table, offsets, scale, cfg)}
    outs = {name: run() for name, run in runs.items()}
    ref = outs["triton eager"]
    for name, (out, vis) in outs.items():
        print(f"{name}: visits equal {torch.equal(vis, ref[1])}, out err "
              f"{((out.float() - ref[0].float()).norm() / ref[0].float().norm()).item():.1e}")
    for r in range(args.rounds):
        for name, run in runs.items():
            flushed = triton.testing.do_bench(run)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                run()
            end.record()
            torch.cuda.synchronize()
            print(f"round {r} {name:16s} do_bench {flushed:7.2f} ms, back to back "
                  f"{start.elapsed_time(end) / 10:7.2f} ms", flush=True)
    try:  # the eager kernel's registers (Inductor's: its cache entry, under $TRITON_CACHE_DIR)
        for dev_cache in T._s2o_attention_kernel.device_caches.values():
            for kern in dev_cache[0].values():
                kern._init_handles()
                print("eager kernel:", kern.n_regs, "registers,", kern.n_spills, "spills")
    except Exception as e:  # noqa: BLE001 - Triton's internals differ between releases
        print("eager kernel: no register count:", e)


if __name__ == "__main__":
    main()
