"""The op under torch.compile against eager, with the pair walk and with the Triton walk
(S2O_PAIR_KERNEL=0), on the structured workload with Llama shapes: does the opaque
s2o::pair_walk keep the pair kernel's gain inside a compiled graph?

    python benchmarks/compiled_walk.py --seq-lens 131072 32768 --tau 0.8

Per length and walk: eager op and compiled op (default Inductor mode), do_bench medians, and
the compiled output's error against eager.
"""
import argparse
import os

import torch
import triton

from s2o_compile import S2OConfig, sparse_attention
from s2o_compile.kernels import walk as W
from s2o_compile.workload import structured_qkv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[131072, 32768])
    ap.add_argument("--tau", type=float, default=0.8)
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    cfg = S2OConfig(threshold=args.tau, min_seq_len=0)
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        op = lambda q, k, v: sparse_attention(q, k, v, enable_gqa=True, config=cfg)  # noqa: E731
        for walk in ("pair", "triton"):
            os.environ["S2O_PAIR_KERNEL"] = "1" if walk == "pair" else "0"
            torch._dynamo.reset()
            compiled = torch.compile(op)
            eager_out = op(q, k, v)
            out = compiled(q, k, v)
            err = ((out.float() - eager_out.float()).norm() / eager_out.float().norm()).item()
            t_eager = triton.testing.do_bench(lambda: op(q, k, v))
            t_comp = triton.testing.do_bench(lambda: compiled(q, k, v))
            print(f"N={N:6d} tau={args.tau} walk={walk:6s} eager {t_eager:7.2f} ms  compiled "
                  f"{t_comp:7.2f} ms  compiled vs eager err {err:.1e}  failures "
                  f"{W.pair_failures() or 'none'}", flush=True)
        del q, k, v
        torch.cuda.empty_cache()
    os.environ.pop("S2O_PAIR_KERNEL", None)


if __name__ == "__main__":
    main()
