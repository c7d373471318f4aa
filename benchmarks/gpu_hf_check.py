"""GPU check of the compiler path: random-init HF Llama with Llama-3.1-8B layer shapes (a few
layers), bf16, compiled with the s2o backend at tau = 0: every layer rewritten, the S2O Triton
kernel in Inductor's code, output vs dense, and the compile time the pass adds."""
import argparse
import time

import torch
from torch._inductor.utils import run_and_get_code
from transformers import LlamaConfig, LlamaForCausalLM

from s2o_compile import S2OConfig, make_backend


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=32768)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                      num_key_value_heads=8, num_hidden_layers=args.layers, vocab_size=1024,
                      max_position_embeddings=131072, rope_theta=500000.0)
    cfg._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)  # initialize on the GPU in bf16: 8B params in seconds
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    ids = torch.randint(0, 1024, (1, args.seq_len), device="cuda")
    with torch.no_grad():
        eager = model(ids).logits.float()
        plain = torch.compile(model)
        t = time.perf_counter(); plain(ids); t_plain = time.perf_counter() - t
        backend = make_backend(S2OConfig(threshold=0.0, min_seq_len=0))
        s2o = torch.compile(model, backend=backend)
        t = time.perf_counter()
        out, codes = run_and_get_code(s2o, ids)
        t_s2o = time.perf_counter() - t
    err = ((out.logits.float() - eager).norm() / eager.norm()).item()
    n_rw = sum(r.num_rewritten for r in backend.reports)
    print(*backend.reports, sep="\n")
    print(f"layers={args.layers} N={args.seq_len} rewritten={n_rw} "
          f"kernel_in_code={any('_s2o_attention_kernel' in c for c in codes)} "
          f"logits_rel_err_vs_eager={err:.4f} compile+run plain={t_plain:.1f}s s2o={t_s2o:.1f}s")


if __name__ == "__main__":
    main()
