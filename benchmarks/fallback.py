"""Below min_seq_len the operator runs dense SDPA: how much does going through it cost?

    python benchmarks/fallback.py --seq-lens 1024 4096 8000 16000 --out results.json

Llama-3.1-8B attention shapes (B 1, Hq 32, Hkv 8, D 128, bf16), inputs laid out as a Hugging Face
model makes them ([B, N, H, D] transposed to [B, H, N, D]). do_bench medians of SDPA against:
  front:   s2o_compile.sparse_attention eager (calls SDPA directly below min_seq_len);
  backend: torch.compile(fn, backend=make_backend()) vs torch.compile(fn): with a static N below
           min_seq_len the pass keeps the SDPA call, so the graphs are the same;
  op:      the op itself under torch.compile, as a rewrite with a symbolic N runs it (the op's
           dense branch: SDPA, a contiguous output and a density tensor).
Default config (min_seq_len 16384). Target: within 3%.
"""
import argparse
import json

import torch
import torch.nn.functional as F
import triton
import triton.testing

import s2o_compile
from s2o_compile import S2OConfig, make_backend
from s2o_compile.ops import config_args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 4096, 8000, 16000])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = S2OConfig()
    cargs = config_args(cfg)
    rows = []
    for N in args.seq_lens:
        assert N < cfg.min_seq_len
        q, k, v = (torch.randn(1, N, h, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                   for h in (32, 8, 8))
        scale = 128 ** -0.5

        def sdpa(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                                  enable_gqa=True)

        def sdpa_again(q, k, v):  # its own code object: Dynamo caches compiles per function
            return sdpa(q, k, v)

        def front(q, k, v):
            return s2o_compile.sparse_attention(q, k, v, scale=scale, enable_gqa=True, config=cfg)

        def op(q, k, v):
            return torch.ops.s2o.sparse_attention(q, k, v, scale, *cargs)[0]

        def ms(f):
            f(q, k, v)
            return triton.testing.do_bench(lambda: f(q, k, v), warmup=50, rep=500,
                                           return_mode="median")

        row = dict(N=N)
        pairs = {"front": (sdpa, front),
                 "backend": (torch.compile(sdpa),
                             torch.compile(sdpa_again, backend=make_backend(cfg))),
                 "op": (torch.compile(sdpa), torch.compile(op))}
        for mode, (base, ours) in pairs.items():
            row[f"{mode}_sdpa_ms"], row[f"{mode}_s2o_ms"] = ms(base), ms(ours)
            row[f"{mode}_ratio"] = row[f"{mode}_s2o_ms"] / row[f"{mode}_sdpa_ms"]
            torch._dynamo.reset()
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        json.dump(dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                       triton=triton.__version__, rows=rows), open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
