"""Soak test of the warp-specialized Gluon walks (benchmarks/gluon_walk.py): does a kernel that
once hung now always finish, and keep Triton's visits? Each case runs in its own process under a
timeout, so a hang is reported as one and the next case still runs.

    python benchmarks/gluon_soak.py --variants pp:tpw=4 ws:tpw=4 --reps 300 --timeout 150

Cases: the Llama shapes on the structured workload (the op's default table, tau 0.8) at the
given lengths, and random inputs with odd lengths, batch 2 and GQA at several taus (many
different stop points, so the producer's reads of the walk's end race with the consumers'
writes often). Per case: the kernel `reps` times back to back, its visits compared with the
Triton kernel's every 25 calls. Variant `persist`: benchmarks/gluon_persist.py (the persistent
pair kernel), `pair`: the op's pair kernel.
"""
import argparse
import subprocess
import sys
import time

RANDOM_CASES = [  # (B, Hq, Hkv, N, D, tau)
    (2, 8, 2, 8229, 128, 0.05), (2, 8, 2, 8229, 128, 0.5), (2, 8, 2, 8229, 128, 0.9),
    (1, 32, 8, 16411, 128, 0.8), (1, 4, 4, 6000, 64, 0.5),
]


def child(args):
    import torch
    from s2o_compile import S2OConfig
    from s2o_compile.kernels import triton_s2o as T
    import gluon_ab
    import gluon_walk as GL
    from s2o_compile.workload import structured_qkv

    if args.variant in ("persist", "pair"):
        from s2o_compile.kernels import gluon_pair as GP
        from gluon_persist import attention_persist
        run = attention_persist if args.variant == "persist" else GP.attention_pair
        unsupported = lambda q, k, v, table, cfg, scale: GP.pair_unsupported(  # noqa: E731
            q, k, v, table, cfg, scale, T.whole_tiles(cfg, cfg.block_m, scale))
    else:
        _, gkw = gluon_ab.parse_variant(args.variant)
        run = lambda *a: GL.attention_gluon(*a, **gkw)  # noqa: E731
        unsupported = lambda q, k, v, table, cfg, scale: GL.gluon_unsupported(  # noqa: E731
            q, k, v, table, cfg, scale, T.whole_tiles(cfg, cfg.block_m, scale),
            gluon_ab.pair_step(cfg, gkw))
    if args.case.startswith("llama"):
        N = int(args.case[5:])
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        cfg = S2OConfig(min_seq_len=0, threshold=0.8, block_m=args.block_m)
    else:
        B, Hq, Hkv, N, D, tau = RANDOM_CASES[int(args.case[6:])]
        g = torch.Generator(device="cuda").manual_seed(N + Hq)
        q, k, v = (torch.randn(B, h, N, D, generator=g, device="cuda", dtype=torch.bfloat16)
                   for h in (Hq, Hkv, Hkv))
        cfg = S2OConfig(min_seq_len=0, threshold=tau, block_m=args.block_m)
    scale = q.shape[-1] ** -0.5
    table, offsets = T.build_index_table(q, k, scale, cfg)
    why = unsupported(q, k, v, table, cfg, scale)
    if why:
        print(f"not taken: {why}", flush=True)
        return
    _, vis_t = T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    start, bad = time.perf_counter(), 0
    for i in range(args.reps):
        _, vis = run(q, k, v, table, offsets, scale, cfg)
        if i % 25 == 24:
            bad += int(not torch.equal(vis, vis_t))
    torch.cuda.synchronize()
    ms = (time.perf_counter() - start) * 1e3 / args.reps
    print(f"finished {args.reps} calls, {ms:.2f} ms each (host-timed), visits differ in {bad} of "
          f"{args.reps // 25} comparisons", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["pp:tpw=4", "ws:tpw=4"])
    ap.add_argument("--seq-lens", type=int, nargs="*", default=[32768, 131072])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=150)
    ap.add_argument("--block-m", type=int, default=64, help="128: the pair kernel's joint stop")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    cases = [f"llama{n}" for n in args.seq_lens] + [f"random{i}" for i in range(len(RANDOM_CASES))]
    hung = 0
    for variant in args.variants:
        for case in cases:
            cmd = [sys.executable, __file__, "--child", "--variant", variant, "--case", case,
                   "--reps", str(args.reps), "--block-m", str(args.block_m)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                last = (done.stdout.strip().splitlines() or [f"rc {done.returncode}: "
                                                            + done.stderr.strip()[-300:]])[-1]
            except subprocess.TimeoutExpired:
                hung, last = hung + 1, f"HUNG (no end within {args.timeout:.0f} s)"
            print(f"{variant:12s} {case:12s} {last}", flush=True)
    print(f"{hung} hung", flush=True)


if __name__ == "__main__":
    main()
