"""Where a tile pair's fixed cost goes: the pair kernel's CTAs time-stamped (session 17).

walk_cost_fit.py found a fixed cost of 1.3-2.4 steps per pair (H200, session 16) without saying
where it goes. Here the pair kernel runs once with STAMPS (gluon_pair._stamp): each CTA records
its SM and, on that SM's clock, its start, its Q tiles stored, its first step landed, its
consumers' last step, their output stored and the producer's last copies landed. On each SM the
CTAs run one after another, so its time splits exactly into
  - ramp: a CTA's start to its first step landed (geometry, Q, the first gather),
  - walk: the first step landed to the last step done (the steps, and their waits),
  - drain: the last step done to the CTA's last warp done (the output, the last copies),
  - gap: a CTA's end to the next CTA's start on the SM (exit and launch),
  - tail: the SM's last CTA's end to the kernel's end (load balance).
Each is given in ms summed over SMs / SMs, and per pair in steps (the walk's mean step). With
block_m 64 it also gives the share of steps one tile walks alone after the other stopped, and
what such a step costs against the steps both tiles walk (lone_phase); and how long a walk step
waits for its K/V to land, both walking and alone (data_waits).

    python benchmarks/pair_ramp.py --seq-lens 32768 131072 --block-ms 64 128 --tau 0.8
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from s2o_compile import S2OConfig
from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels.layout import query_tiles
from s2o_compile.workload import structured_qkv

SLOTS = dict(gt_start=0, start=1, sm=2, q=3, first=4, loop=5, out0=6, steps=7, prod_loop=8,
             prod_end=9, gt_end=10, out1=11, c0_start=12, loop1=13, first_issued=14,
             q_landed=15, prod_start=16, first_rows=17, stop0=18, stop1=19, stop0_clk=20,
             stop1_clk=21, wait_both0=22, wait_both1=23, wait_alone0=24, wait_alone1=25,
             steps_both0=26, steps_both1=27, steps_alone0=28, steps_alone1=29)
PHASES = ("fence", "qk", "softmax", "pv", "step", "steps")  # slots 32 + 8 x consumer + i
for _x in (0, 1):
    SLOTS.update({f"ph_{name}{_x}": 32 + 8 * _x + i for i, name in enumerate(PHASES)})
WIDTH = 48  # slots a CTA (gluon_pair.STAMP_SLOTS)


def split(st: torch.Tensor) -> dict:
    """The SMs' time, split as the module says, from one run's stamps [ctas, WIDTH]."""
    st = st.double()
    col = {k: st[:, i] for k, i in SLOTS.items()}
    end = torch.stack([col["out0"], col["out1"], col["prod_end"]]).max(0).values
    # ns per clock, from the CTAs' globaltimer and clock spans (the longest, least quantized)
    span_gt = col["gt_end"] - col["gt_start"]
    span_clk = col["out0"] - col["start"]
    ns_per_clk = float(span_gt.sum() / span_clk.sum())
    parts = dict(ramp=0.0, walk=0.0, drain=0.0, gap=0.0, tail=0.0)
    sms = col["sm"].long()
    per_sm = []
    for sm in sms.unique().tolist():
        idx = (sms == sm).nonzero().flatten()
        idx = idx[col["start"][idx].argsort()]
        s, f, lp, e = col["start"][idx], col["first"][idx], col["loop"][idx], end[idx]
        parts["ramp"] += float((f - s).sum())
        parts["walk"] += float((lp - f).sum())
        parts["drain"] += float((e - lp).sum())
        parts["gap"] += float((s[1:] - e[:-1]).sum())
        # the SM's last end on the globaltimer (SMs' clocks are not aligned)
        last = int(idx[-1])
        per_sm.append((float(col["gt_end"][last]) + float(e[-1] - col["out0"][last]) * ns_per_clk,
                       float(col["gt_start"][idx[0]])))
    t0 = min(p[1] for p in per_sm)
    t1 = max(p[0] for p in per_sm)
    parts["tail"] = sum(t1 - p[0] for p in per_sm) / ns_per_clk
    n_sm = len(per_sm)
    steps = float(col["steps"].sum())
    step_clk = parts["walk"] / steps  # a step's mean time on its SM, waits included
    pairs = st.shape[0]
    out = {k: dict(ms_per_sm=v * ns_per_clk / n_sm / 1e6, steps_per_pair=v / step_clk / pairs)
           for k, v in parts.items()}
    # the ramp's and the drain's parts: each event after the CTA's start or consumer 0's last
    # step
    events = [(f"ramp_{n}", n, "start") for n in ("c0_start", "prod_start", "first_rows",
                                                  "first_issued", "q_landed")]
    events += [("q_stored", "q", "start")]
    events += [(f"drain_{n}", n, "loop") for n in ("loop1", "out0", "out1", "prod_loop",
                                                   "prod_end")]
    for key, name, since in events:
        d = float((col[name] - col[since]).sum())
        out[key] = dict(ms_per_sm=d * ns_per_clk / n_sm / 1e6,
                                    steps_per_pair=d / step_clk / pairs)
    out.update(kernel_ms=(t1 - t0) / 1e6, sms=n_sm, pairs=pairs, steps=steps,
               step_us_on_sm=step_clk * ns_per_clk / 1e3, ns_per_clk=ns_per_clk)
    out.update(lone_phase(col, ns_per_clk))
    out.update(data_waits(col, ns_per_clk))
    out.update(step_phases(col))
    return out


def step_phases(col: dict) -> dict:
    """Where a consumer's walk step goes while both tiles walk (slots 32-45, session 23), in
    SM clocks a step: the proxy fence, Q K^T issued to landed, the mask and softmax to P @ V
    issued, the stop rule and P @ V to landed, and the whole step (loop top to loop top; the
    rest is the wait for K/V, the chunk-end exchange and the release)."""
    out = {}
    for x in (0, 1):
        n = float(col[f"ph_steps{x}"].sum())
        if n:
            for name in PHASES[:-1]:
                out[f"phase_{name}{x}_clk"] = float(col[f"ph_{name}{x}"].sum()) / n
            out[f"phase_steps{x}"] = n
    return out


def lone_phase(col: dict, ns_per_clk: float) -> dict:
    """block_m 64: the steps one tile of a pair walks after the other stopped (slots 18-21: a
    tile's own end step and its clock, stamped at the chunk end where it stops; 0 where it
    walked to the pair's end without stopping), against the steps both walk. Per step in us on
    its SM: shared = the first step landed to the first stop, lone = the first stop to the
    loop's end (the later of the two consumers')."""
    stops = torch.stack([col["stop0"], col["stop1"]])
    clks = torch.stack([col["stop0_clk"], col["stop1_clk"]])
    stamped = stops > 0
    first = torch.where(stamped, stops, torch.full_like(stops, float("inf"))).min(0)
    early = first.values
    lone = torch.isfinite(early) & (early < col["steps"])
    if not bool(lone.any()):
        return dict(lone_share=0.0)
    early_clk = clks.gather(0, first.indices[None]).squeeze(0)
    end = torch.maximum(col["loop"], col["loop1"])
    lone_steps = float((col["steps"] - early)[lone].sum())
    lone_us = float((end - early_clk)[lone].sum()) * ns_per_clk / 1e3
    shared_us = float((early_clk - col["first"])[lone].sum()) * ns_per_clk / 1e3
    return dict(lone_share=lone_steps / float(col["steps"].sum()),
                lone_pairs=float(lone.double().mean()),
                lone_step_us=lone_us / lone_steps,
                shared_step_us=shared_us / float(early[lone].sum()))


def data_waits(col: dict, ns_per_clk: float) -> dict:
    """How long a consumer's walk step waited for its K/V to land (slots 22-29: each
    consumer's clocks in its wait on `ready`, and its walk steps, while both tiles walk and
    while it walks alone), in us a step: near 0, the step is the consumer's own; near the
    step's time, the producer's."""
    out = {}
    for phase in ("both", "alone"):
        clk = float((col[f"wait_{phase}0"] + col[f"wait_{phase}1"]).sum())
        n = float((col[f"steps_{phase}0"] + col[f"steps_{phase}1"]).sum())
        out[f"wait_{phase}_us"] = clk * ns_per_clk / 1e3 / n if n else 0.0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--block-ms", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--module", default="gluon_pair",
                    help="the pair kernel's module: the op's, or a copy of an older one under "
                         "benchmarks/ (A/B)")
    ap.add_argument("--kw", default="", help="attention_pair keywords, 'key=int,key=int'")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    kw = {k: int(v) for k, v in (f.split("=") for f in args.kw.split(",") if f)}
    pair = GP if args.module == "gluon_pair" else __import__(args.module)
    print(dict(card=torch.cuda.get_device_name(), torch=torch.__version__), flush=True)
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        for bm in args.block_ms:
            cfg = S2OConfig(min_seq_len=0, block_m=bm, threshold=args.tau)
            table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
            ctas = q.shape[1] * query_tiles(N, N, 2 * GP.BLOCK)
            stamps = torch.zeros(ctas, WIDTH, dtype=torch.int64, device="cuda")
            run = lambda: pair.attention_pair(q, k, v, table, offsets, 128 ** -0.5, cfg,  # noqa
                                            stamps=stamps, **kw)
            for _ in range(3):
                run()
            torch.cuda.synchronize()
            res = split(stamps.cpu())
            res.update(N=N, block_m=bm, tau=args.tau, module=args.module, kw=args.kw)
            rows.append(res)
            print(f"{args.module} {args.kw} N={N} bm={bm}: kernel {res['kernel_ms']:.3f} ms, "
                  f"{res['pairs']} pairs on "
                  f"{res['sms']} SMs, a step {res['step_us_on_sm']:.2f} us on its SM", flush=True)
            for part in ("ramp_c0_start", "ramp_prod_start", "ramp_first_rows",
                         "ramp_q_landed", "q_stored", "ramp_first_issued",
                         "ramp", "walk", "drain", "drain_loop1", "drain_out0", "drain_out1",
                         "drain_prod_loop", "drain_prod_end", "gap", "tail"):
                r = res[part]
                print(f"    {part:9s} {r['ms_per_sm']:7.3f} ms/SM  {r['steps_per_pair']:6.2f} "
                      "steps/pair", flush=True)
            if res.get("lone_step_us"):
                print(f"    lone steps: {res['lone_share']:.1%} of the streamed, in "
                      f"{res['lone_pairs']:.0%} of the pairs; a lone step "
                      f"{res['lone_step_us']:.2f} us, a shared one {res['shared_step_us']:.2f} us "
                      "(before the first stop, same pairs)", flush=True)
            print(f"    a walk step waited for its K/V: {res['wait_both_us']:.2f} us while both "
                  f"tiles walk, {res['wait_alone_us']:.2f} us alone", flush=True)
            for x in (0, 1):
                if f"phase_step{x}_clk" in res:
                    print(f"    consumer {x}, a walk step both walk, SM clocks: " + ", ".join(
                        f"{name} {res[f'phase_{name}{x}_clk']:.0f}" for name in PHASES[:-1]),
                        flush=True)
    if args.out:
        json.dump(rows, open(args.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
