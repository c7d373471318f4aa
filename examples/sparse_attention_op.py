"""The S2O operator on its own: a drop-in for causal scaled_dot_product_attention, with stats.

sparse_attention(q, k, v, enable_gqa=True, config=..., return_stats=True) returns the output and
the density per (batch, query head): the fraction of the N(N+1)/2 causal query-key pairs it
computed. The threshold trades density for error against dense attention; 0 is exact. Inputs
below config.min_seq_len run dense SDPA (density 1.0) on purpose. The last part runs a chunked
prefill (the last queries over all keys, causal_variant="lower_right").

On CPU this runs the PyTorch reference (density and error, not speed); on CUDA the Triton
kernels. Input: the structured workload (s2o_compile.workload), concentrated like real
long-context attention; random q/k would attend uniformly and leave nothing to skip.

    python examples/sparse_attention_op.py
"""
import torch
import torch.nn.functional as F

from s2o_compile import S2OConfig, sparse_attention
from s2o_compile.workload import structured_qkv

device = "cuda" if torch.cuda.is_available() else "cpu"
N = 32768 if device == "cuda" else 8192
dtype = torch.bfloat16 if device == "cuda" else torch.float32
q, k, v = structured_qkv(batch=1, heads=8, kv_heads=2, seq_len=N, head_dim=128, dtype=dtype,
                         device=device)  # q [1, 8, N, 128], k and v [1, 2, N, 128]: GQA
dense = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).float()

print(f"N={N} on {device}; per-head density listed for heads 0..7")
for tau in (0.0, 1e-3, 1e-2, 0.1):
    cfg = S2OConfig(threshold=tau, min_seq_len=0)
    out, density = sparse_attention(q, k, v, enable_gqa=True, config=cfg, return_stats=True)
    err = ((out.float() - dense).norm() / dense.norm()).item()
    heads = " ".join(f"{d:.2f}" for d in density[0].tolist())
    print(f"threshold={tau:<6g} density={density.mean().item():.3f} rel.err={err:.2e}  "
          f"heads: {heads}")

# Below min_seq_len (default 16384) the op runs dense SDPA: density 1.0 by construction.
short = [t[:, :, :1024] for t in (q, k, v)]
_, density = sparse_attention(*short, enable_gqa=True, return_stats=True)
print(f"N=1024 < min_seq_len={S2OConfig().min_seq_len}: density {density.mean().item():.1f} "
      "(dense SDPA)")

# Chunked prefill: the last L queries over all N keys (a KV cache), causal to the lower right.
# causal_variant="upper_left" (the default) is SDPA's is_causal=True instead.
L = N // 4
chunk = q[:, :, N - L:]
cfg = S2OConfig(threshold=0.1, min_seq_len=0)
out, density = sparse_attention(chunk, k, v, enable_gqa=True, config=cfg, return_stats=True,
                                causal_variant="lower_right")
err = ((out.float() - dense[:, :, N - L:]).norm() / dense[:, :, N - L:].norm()).item()
print(f"chunk of the last {L} queries: density={density.mean().item():.3f} rel.err={err:.2e} "
      "(against the same rows of the whole prefill)")
