"""Below min_seq_len the operator runs dense SDPA: how much does going through it cost?

    python benchmarks/fallback.py --seq-lens 1024 4096 8000 --out results.json

Llama-3.1-8B attention shapes (B 1, Hq 32, Hkv 8, D 128, bf16), inputs laid out as a Hugging Face
model makes them ([B, N, H, D] transposed to [B, H, N, D]). Times (do_bench medians) plain SDPA
and torch.ops.s2o.sparse_attention with the default config (min_seq_len 8192), both eager and
under torch.compile (the path the graph pass produces), and their ratio. Target: within 3%.
"""
import argparse
import json

import torch
import torch.nn.functional as F
import triton
import triton.testing

import s2o_compile  # noqa: F401  (registers torch.ops.s2o)
from s2o_compile import S2OConfig
from s2o_compile.ops import config_args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 4096, 8000])
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

        def s2o(q, k, v):
            return torch.ops.s2o.sparse_attention(q, k, v, scale, *cargs)[0]

        row = dict(N=N)
        for mode, wrap in [("eager", lambda f: f), ("compiled", torch.compile)]:
            for name, fn in [("sdpa", sdpa), ("s2o", s2o)]:
                f = wrap(fn)
                f(q, k, v)
                row[f"{mode}_{name}_ms"] = triton.testing.do_bench(
                    lambda: f(q, k, v), warmup=50, rep=500, return_mode="median")
            row[f"{mode}_ratio"] = row[f"{mode}_s2o_ms"] / row[f"{mode}_sdpa_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        json.dump(dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                       triton=triton.__version__, rows=rows), open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
