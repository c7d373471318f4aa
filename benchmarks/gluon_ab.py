"""The Gluon attention kernels (benchmarks/gluon_walk.py, an experiment) against the Triton one, on one Hopper card:
first the same outputs and visits on random inputs (several shapes, GQA, batch 2, odd N), then
time, density and error on the structured workload with the same index table.

    python benchmarks/gluon_ab.py --seq-lens 131072 32768 --taus 0.8 \
        --variants triton gluon:tpw=4 ws:tpw=8 ws:tpw=4 --check-variants ws gluon:tpw=4
"""
import argparse

import torch
import torch.nn.functional as F
import triton

from s2o_compile import S2OConfig
import gluon_walk as GL  # benchmarks/gluon_walk.py (an experiment, not used by the op)
from s2o_compile.kernels import triton_s2o as T
from kernel_ab import bench, density, llama_inputs, rel_err  # benchmarks/kernel_ab.py


def parse_variant(spec):
    """'gluon' / 'ov' / 'ws' / 'pp' / 'triton' [':' k=v,...] -> (name,
    attention_gluon kwargs or None)."""
    kind, _, rest = spec.partition(":")
    kw = {k: int(v) for k, v in (f.split("=") for f in rest.split(",") if f)}
    if kind == "triton":
        return spec, None
    kw = {"tpw_rows": kw.pop("tpw", 8), "producer_warps": kw.pop("pw", 4),
          "producer_regs": kw.pop("regs", 56), **kw}
    if kind in ("ws", "pp"):
        kw[kind] = True
        if kind == "pp":  # the op's pair kernel (gluon_pair.py): A/B of its launch options
            kw["nbuf"] = kw.pop("nbuf", None)  # default: 3 at 128-key steps, 4 at 64
            kw["consumer_regs"] = kw.pop("cr", 224)
            kw["step"] = kw.pop("step", None)  # keys per step (default: gluon_pair.pair_step)
    else:
        kw["ov"] = kind == "ov"  # the overlapped one-warpgroup kernel (session 11)
        kw.pop("producer_warps"); kw.pop("producer_regs")
    return spec, kw


def pair_step(cfg, gluon_kw):
    """The pair kernel's keys per step for gluon_unsupported (None: not the pair kernel)."""
    if not (gluon_kw or {}).get("pp"):
        return None
    return gluon_kw.get("step") or GL.GP.pair_step(cfg)


def _check(B, Hq, Hkv, N, D, dtype, tau, transposed=False, gluon_kw=None, **cfg_fields):
    """Gluon against Triton on random inputs with the same table: output error, visits equal."""
    g = torch.Generator(device="cuda").manual_seed(N + D + Hq)
    shape = (B, N, Hq, D) if transposed else (B, Hq, N, D)
    q = torch.randn(*shape, generator=g, device="cuda", dtype=dtype)
    k = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype) * 1.5
    v = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype)
    if transposed:
        q = q.transpose(1, 2)
    cfg = S2OConfig(min_seq_len=0, threshold=tau, **cfg_fields)
    scale = D ** -0.5
    table, offsets = T.build_index_table(q, k, scale, cfg)
    whole = T.whole_tiles(cfg, cfg.block_m, scale)
    why = GL.gluon_unsupported(q, k, v, table, cfg, scale, whole, pair_step(cfg, gluon_kw))
    if why:
        print(f"  check B={B} Hq={Hq} Hkv={Hkv} N={N} D={D} {dtype}: not taken: {why}")
        return
    ref, vis_t = T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    out, vis_g = GL.attention_gluon(q, k, v, table, offsets, scale, cfg, **(gluon_kw or {}))
    dense = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    same = (vis_t == vis_g).float().mean().item()
    print(f"  check B={B} Hq={Hq} Hkv={Hkv} N={N} D={D} {str(dtype)[6:]} tau={tau} "
          f"{'transposed ' if transposed else ''}{cfg_fields or ''}: "
          f"gluon vs triton err={rel_err(out, ref):.2e} max={(out.float() - ref.float()).abs().max().item():.2e} "
          f"visits equal {same:.4f} (sum {vis_g.sum().item()} vs {vis_t.sum().item()}); "
          f"vs dense: gluon {rel_err(out, dense):.4f} triton {rel_err(ref, dense):.4f} "
          f"finite={bool(torch.isfinite(out).all())}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="*", default=[32768, 131072])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.6, 0.8, 0.9])
    ap.add_argument("--variants", nargs="+", default=["triton", "gluon", "ws"])
    ap.add_argument("--check-variants", nargs="+", default=["gluon", "ws"])
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--debug", action="store_true", help="isolate the block_n 64 / sink 128 case")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    for cv in ([] if args.skip_checks else args.check_variants):
        name, gkw = parse_variant(cv)
        print(f"checks of {name}", flush=True)
        check = lambda *a, **kw: _check(*a, gluon_kw=gkw, **kw)  # noqa: E731
        for tau in (0.05, 0.5):
            check(1, 8, 2, 4096, 128, torch.bfloat16, tau)
            check(2, 8, 2, 8192 + 37, 128, torch.bfloat16, tau)
            check(1, 4, 4, 6000, 64, torch.float16, tau)
            check(1, 8, 2, 8192, 128, torch.bfloat16, tau, transposed=True)
            check(1, 8, 2, 8192, 128, torch.bfloat16, tau, stop_rule="gain", walk_chunk=128)
            check(1, 8, 2, 8192, 128, torch.bfloat16, tau, block_n=64, segment_size=1024,
                  sink_tokens=128, local_window=0)
    if args.debug:
        for f in (dict(block_n=64, segment_size=1024, sink_tokens=128, local_window=0),
                  dict(sink_tokens=128), dict(local_window=0), dict(block_n=64),
                  dict(segment_size=1024), dict(block_n=64, local_window=0),
                  dict(sink_tokens=128, local_window=0)):
            _check(1, 8, 2, 8192, 128, torch.bfloat16, 0.05, **f)
    for N in args.seq_lens:
        q, k, v, _, ref, dense = llama_inputs(N)
        scale = 128 ** -0.5
        base = S2OConfig(min_seq_len=0)
        table, offsets = T.build_index_table(q, k, scale, base)
        pre = bench(lambda: T.build_index_table(q, k, scale, base))
        print(f"  preprocessing {pre:.2f} ms", flush=True)
        for tau in args.taus:
            cfg = base.replace(threshold=tau)
            runs = {}
            for spec in args.variants:
                name, gkw = parse_variant(spec)
                runs[name] = ((lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg))
                              if gkw is None else (lambda gkw=gkw: GL.attention_gluon(
                                  q, k, v, table, offsets, scale, cfg, **gkw)))
            for _ in range(2):  # alternating, twice
                for name, run in runs.items():
                    out, vis = run()
                    d = density(vis, N, cfg)
                    t = bench(run)
                    print(f"  tau={tau:<4g} {name:20s}: {t:8.2f} ms (+pre {t + pre:8.2f} = {dense / (t + pre):5.2f}x) "
                          f"density={d:.4f} err={rel_err(out, ref):.4f} eff(att)={t / (d * dense):.2f} "
                          f"eff(op)={(t + pre) / (d * dense):.2f}", flush=True)
        del q, k, v, ref, table
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
