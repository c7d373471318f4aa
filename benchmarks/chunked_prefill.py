"""Chunked prefill: S2O on the last q_len queries of a kv_len-token context (needs a CUDA GPU).

    python benchmarks/chunked_prefill.py --kv-lens 131072 --q-lens 32768 8192 2048 512 --taus 0.8

Llama-3.1-8B attention shapes (B 1, Hq 32, Hkv 8, D 128, bf16) on the structured workload; the
queries are the last q_len positions, causal to the lower right. Dense baselines in the same run:
SDPA with torch.nn.attention.bias.causal_lower_right under the FLASH and EFFICIENT backends
(cuDNN has no lower-right causal mask in SDPA), and, as the per-pair rate of the fastest
kernel, cuDNN's whole causal prefill of kv_len tokens pro-rated to the chunk's causal pairs
("cudnn_prorated"). Reports S2O's total (the op's path), preprocessing and walk times (the
op's walk kernel named, the Triton walk's beside it), density, relative
error against the dense output, speedup against the fastest lower-right kernel, and efficiency
(op / (density x cudnn_prorated)). Medians of triton.testing.do_bench. JSON with --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from s2o_compile import S2OConfig
from s2o_compile.bench import _bench, dense_times
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels import walk as W
from s2o_compile.kernels.layout import causal_pairs
from s2o_compile.workload import structured_qkv


def lower_right_times(q, k, v) -> dict:
    """Median ms of lower-right causal SDPA per backend (None: refused)."""
    group = q.shape[1] // k.shape[1]
    kk, vv = (x.repeat_interleave(group, dim=1) for x in (k, v))  # CausalBias: no enable_gqa
    mask = causal_lower_right(q.shape[2], k.shape[2])
    times = {}
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
        def run():
            return F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)
        try:
            with sdpa_kernel([backend]):
                run()
                times[name] = _bench(run)
        except Exception as e:  # noqa: BLE001 - a refusing backend is reported
            times[name] = None
            print(f"  lower-right {name}: unavailable ({type(e).__name__}: {str(e)[:80]})")
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        ref = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask).float()
    return times, ref


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kv-lens", type=int, nargs="+", default=[131072])
    ap.add_argument("--q-lens", type=int, nargs="+", default=[32768, 8192, 2048, 512])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.8])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import triton

    meta = dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__, python=platform.python_version(),
                date=time.strftime("%Y-%m-%d"), heads=32, kv_heads=8, head_dim=128, dtype="bf16")
    print(meta)
    rows = []
    scale = 128 ** -0.5
    for N in args.kv_lens:
        q_all, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        whole = dense_times(q_all, k, v)["cudnn"]
        print(f"kv_len {N}: cuDNN whole causal prefill {whole:.2f} ms")
        for L in args.q_lens:
            q = q_all[:, :, N - L:]
            pairs = causal_pairs(L, N)
            prorated = whole * pairs / causal_pairs(N, N)
            dts, ref = lower_right_times(q, k, v)
            best = min(t for t in dts.values() if t is not None)
            for tau in args.taus:
                cfg = S2OConfig(threshold=tau, min_seq_len=0)
                out, density = W.s2o_attention(q, k, v, scale, cfg)  # the op's path
                err = ((out.float() - ref).norm() / ref.norm()).item()
                table, offsets = T.walk_table(q, k, scale, cfg)
                kernel = W.kernel_for(q, k, v, table, scale, cfg)[0]
                t_pre = 0.0 if table is None else _bench(lambda: T.build_index_table(q, k, scale, cfg))
                t_att = _bench(lambda: W.attention(q, k, v, table, offsets, scale, cfg))
                t_tri = t_att if kernel == "triton" else _bench(
                    lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg))
                t_all = _bench(lambda: W.s2o_attention(q, k, v, scale, cfg))
                d = density.mean().item()
                row = dict(kv_len=N, q_len=L, tau=tau, density=d, rel_err=err, s2o_ms=t_all,
                           preprocess_ms=t_pre, attention_ms=t_att, kernel=kernel,
                           triton_attention_ms=t_tri, lower_right_ms=dts,
                           best_lower_right_ms=best, cudnn_whole_ms=whole,
                           cudnn_prorated_ms=prorated, speedup=best / t_all,
                           speedup_vs_prorated=prorated / t_all,
                           efficiency=t_all / (d * prorated))
                rows.append(row)
                print(f"N={N} L={L:6d} tau={tau:<4g} density={d:.4f} err={err:.4f} "
                      f"s2o={t_all:8.3f}ms (pre {t_pre:6.3f} att {t_att:8.3f} {kernel}, triton "
                      f"{t_tri:8.3f}) "
                      f"{' '.join(f'{k_}={v_:.3f}' for k_, v_ in dts.items() if v_)} "
                      f"cudnn_prorated={prorated:.3f} speedup={best / t_all:5.2f}x "
                      f"(vs prorated {prorated / t_all:5.2f}x) eff={row['efficiency']:.2f}",
                      flush=True)
            del ref
        del q_all, k, v
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
