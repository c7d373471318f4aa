"""End-to-end prefill: HF Llama-3.1-8B *architecture* (config values, random bf16 weights, no
download), torch.compile default vs backend="s2o": time to first token (one prefill forward),
peak memory, and the rewrite report. Random weights make accuracy meaningless here (their
attention is near-uniform, so density stays high unless the threshold forces it down); the
speed is mechanical: what the kernels cost inside a real model graph.

    python benchmarks/e2e_prefill.py --seq-lens 32768 131072 --layers 32
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import s2o_compile
from s2o_compile import S2OConfig, make_backend


def layer_densities(fwd, ids, cfg: S2OConfig) -> list[float]:
    """S2O's density in every layer of one eager forward: HF's "sdpa" attention function is
    wrapped to also run the S2O op (return_stats) on the layer's real q, k, v."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    densities = []

    def recording(module, query, key, value, attention_mask, **kwargs):
        _, density = s2o_compile.sparse_attention(query, key, value, scale=kwargs.get("scaling"),
                                                  enable_gqa=True, config=cfg, return_stats=True)
        densities.append(density.mean().item())
        return sdpa(module, query, key, value, attention_mask, **kwargs)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = recording
    try:
        fwd(ids)
    finally:
        del ALL_ATTENTION_FUNCTIONS["sdpa"]
    return densities


def timed(fn, reps=3):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 65536, 131072])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=S2OConfig.threshold)
    ap.add_argument("--modes", nargs="+", default=["dense", "s2o"], choices=["dense", "s2o", "eager", "density"],
                    help="dense: torch.compile default; s2o: backend s2o; eager: no compile (HF "
                         "calls SDPA with is_causal=True and no mask: the dense reference where "
                         "the compiled dense path runs out of memory); density: S2O's density "
                         "per layer on the layers' real q, k, v (one eager forward)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                      num_key_value_heads=8, num_hidden_layers=args.layers, vocab_size=128256,
                      max_position_embeddings=131072, rope_theta=500000.0)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # initialize on the GPU in bf16: 8B params in seconds
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    backend = make_backend(S2OConfig(threshold=args.threshold))
    rows = []
    torch._dynamo.config.automatic_dynamic_shapes = False  # one static graph per length
    with torch.no_grad():
        # logits_to_keep=1: prefill needs only the last position's logits (as generate() does)
        fwd = lambda ids: model(ids, logits_to_keep=1).logits  # noqa: E731
        dense = torch.compile(fwd)
        s2o = torch.compile(fwd, backend=backend)
        for N in args.seq_lens:
            ids = torch.randint(0, cfg.vocab_size, (1, N), device="cuda")
            row = dict(N=N, layers=args.layers, threshold=args.threshold)
            fns = {"dense": dense, "s2o": s2o, "eager": fwd}
            if "density" in args.modes:
                d = layer_densities(fwd, ids, S2OConfig(threshold=args.threshold))
                row["s2o_density_mean"] = sum(d) / len(d)
                row["s2o_density_layers"] = d
            for name, fn in [(m, fns[m]) for m in args.modes if m != "density"]:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                try:
                    t0 = time.perf_counter()
                    fn(ids)
                    torch.cuda.synchronize()
                    row[f"{name}_first_call_s"] = time.perf_counter() - t0
                    row[f"{name}_ttft_ms"] = timed(lambda: fn(ids))
                    row[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                except torch.OutOfMemoryError as e:  # HF's compiled dense path builds an N x N mask
                    row[f"{name}_error"] = "OOM: " + str(e).split(". ")[0]
            if "dense_ttft_ms" in row and "s2o_ttft_ms" in row:
                row["speedup"] = row["dense_ttft_ms"] / row["s2o_ttft_ms"]
            if "s2o" in args.modes:
                row["rewritten"] = backend.reports[-1].num_rewritten if backend.reports else 0
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:  # after every length: a later failure keeps what was measured
                json.dump(dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                               rows=rows), open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
