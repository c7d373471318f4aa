"""Figures for the benchmarks (PNG, matplotlib): what S2O sees and what it buys.

    python benchmarks/plots.py heatmap                       # (a) CPU, N 4096, ~20 s
    python benchmarks/plots.py results benchmarks/results/h100_*.json   # (b) tau, (c) speedup
    python benchmarks/plots.py claims results/x_claims.json  # MSE vs density -> x_claims.png

heatmap: one head of the structured workload, (1) attention in original key order and (2) the
cumulative prefix mass a walk collects in each visiting order, then one segment's queries against
the first keys of its ranked prefix in visiting order, (3) S2O's index table and (4) the
block-sparse baseline's (baselines.py), with where each query tile stopped at the given tau. Attention is computed in row chunks and max-pooled
into display bins: never an N x N matrix (max pooling keeps single-key stripes visible).
results: from bench_op.py JSON ({"meta", "rows": [{N, tau, density, rel_err, speedup, config}]}):
density and error vs tau, speedup vs N, one line per (stop rule, ordering, N or tau).
claims: from paper_claims.py JSON: MSE vs density, one panel per N, one curve per method.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import torch  # noqa: E402

from baselines import block_sparse_table  # noqa: E402
from s2o_compile import S2OConfig  # noqa: E402
from s2o_compile.kernels import layout  # noqa: E402
from s2o_compile.kernels import reference as R  # noqa: E402
from s2o_compile.workload import structured_qkv  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DPI = 90
# 16 colour levels (a quantized colormap) let heat-map PNGs compress to well below 200 KB.
CMAP = plt.get_cmap("magma", 16)


def _save(fig, path) -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    # A 256-colour palette image is visually the same for these plots and 2-4x smaller.
    from PIL import Image  # a matplotlib dependency

    with Image.open(path) as im:
        im.convert("RGB").quantize(256).save(path, optimize=True)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")
    return path


# ------------------------------------------------------------------------- (a) heat maps

def _probs(q_rows: torch.Tensor, qpos: torch.Tensor, keys: torch.Tensor, kpos_all: torch.Tensor,
           scale: float) -> torch.Tensor:
    """Causal softmax of query rows [R, D] at positions qpos over ALL causal keys [N, D] of
    positions kpos_all: [R, N] (rows are normalised over every key, whatever is displayed)."""
    s = (q_rows.float() @ keys.float().T) * scale
    s = s.masked_fill(kpos_all[None, :] > qpos[:, None], -math.inf)
    return torch.softmax(s, dim=-1)


def pool_max(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Max-pool a [R, C] map into at most [rows, cols] display bins (edges padded with 0)."""
    R_, C = x.shape
    fr, fc = math.ceil(R_ / rows), math.ceil(C / cols)
    x = torch.nn.functional.pad(x, (0, fc * math.ceil(C / fc) - C, 0, fr * math.ceil(R_ / fr) - R_))
    return torch.nn.functional.max_pool2d(x[None, None], (fr, fc))[0, 0]


def full_map(q, k, head: int, scale: float, bins: int, chunk: int = 256) -> torch.Tensor:
    """One head's causal attention, max-pooled to [bins, bins], built chunk by chunk of rows."""
    N = q.shape[2]
    group = q.shape[1] // k.shape[1]
    keys = k[0, head // group]
    pos = torch.arange(N)
    fr = math.ceil(N / bins)
    chunk = max(fr, chunk // fr * fr)  # whole row bins per chunk
    parts = []
    for r0 in range(0, N, chunk):
        p = _probs(q[0, head, r0:r0 + chunk], pos[r0:r0 + chunk], keys, pos, scale)
        parts.append(pool_max(p, math.ceil(p.shape[0] / fr), bins))
    return torch.cat(parts, 0)


def visiting_order(table: torch.Tensor, seg: layout.Segment, offsets, g: int, kv: int):
    """Key positions of segment g in visiting order: sink, local window + own keys (dense pass),
    then the ranked prefix as the index table lists it."""
    dense = torch.cat([torch.arange(0, seg.sink_end), torch.arange(seg.lo, seg.end)])
    return torch.cat([dense, table[0, kv, offsets[g]:offsets[g + 1]].long()])


def heatmap(args) -> str:
    # 512-query segments: a picture at N <= 8192 needs several of them (the default is 2048)
    cfg = S2OConfig(threshold=args.tau, min_seq_len=0, ordering=args.ordering, segment_size=512)
    N, H, Hkv, D = args.seq_len, 8, 2, 128
    if N > 8192:
        sys.exit("plots heatmap: --seq-len above 8192 is not needed for a picture (CPU, O(N^2))")
    q, k, v = structured_qkv(1, H, Hkv, N, D, dtype=torch.float32, seed=args.seed)
    scale = D ** -0.5
    head, kv = args.head, args.head // (H // Hkv)
    segs = layout.segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window)
    g = len(segs) - 1 if args.segment is None else args.segment
    seg = segs[g]
    if seg.prefix_len == 0:
        sys.exit(f"plots heatmap: segment {g} has no ranked prefix; pick a later one")
    offsets = layout.table_offsets(N, cfg.segment_size, cfg.sink_tokens,
                                   cfg.local_window).tolist()
    tables = {"S2O": R.build_index_table(q, k, scale, cfg),
              "block-sparse": block_sparse_table(q, k, scale, cfg)}
    qpos = torch.arange(seg.start, seg.end)
    p_seg = _probs(q[0, head, seg.start:seg.end], qpos, k[0, kv], torch.arange(N), scale)

    fig, ax = plt.subplots(2, 2, figsize=(11, 9.5))
    full = full_map(q, k, head, scale, bins=min(256, N))
    a = ax[0, 0]
    a.imshow(torch.log10(full + 1e-8).numpy(), cmap=CMAP, vmin=-6, vmax=0, interpolation="nearest",
             extent=(0, N, N, 0))
    a.axhspan(seg.start, seg.end, color="cyan", alpha=0.15)
    a.set(title=f"head {head}: attention, original key order (max-pooled)", xlabel="key",
          ylabel="query")

    # Cumulative prefix mass collected per walk order (averaged over the segment's queries).
    prefix = torch.arange(seg.sink_end, seg.lo)
    a = ax[0, 1]
    orders = {"original order": prefix, **{name: visiting_order(t, seg, offsets, g, kv)[-len(prefix):]
                                          for name, t in tables.items()}}
    for name, order in orders.items():
        mass = p_seg[:, order].sum(0)
        cum = mass.cumsum(0) / mass.sum()
        a.plot(torch.arange(1, len(order) + 1) / len(order), cum, label=name)
    a.set(title=f"segment {g}: prefix mass collected vs keys visited", xlabel="fraction of "
          f"ranked prefix visited ({len(prefix)} keys)", ylabel="fraction of prefix mass",
          xscale="log")
    a.grid(alpha=0.3)
    a.legend()

    # The ranked prefix in visiting order (the dense pass is the same for both methods).
    shown = min(args.show, seg.prefix_len)
    for a, (name, table) in zip(ax[1], tables.items()):
        order = visiting_order(table, seg, offsets, g, kv)[-seg.prefix_len:][:shown]
        m = pool_max(p_seg[:, order], 128, 256)
        a.imshow(torch.log10(m + 1e-8).numpy(), cmap=CMAP, vmin=-6, vmax=0, interpolation="nearest",
                 aspect="auto", extent=(0, shown, seg.end, seg.start))
        _, visited, _ = R.attention_with_table(q, k, v, table, scale, cfg)
        tiles = visited[0, head, seg.start // cfg.block_m:math.ceil(seg.end / cfg.block_m)]
        for t, n in enumerate(tiles.tolist()):
            r0 = seg.start + t * cfg.block_m
            a.plot([min(n * cfg.block_n, shown)] * 2, [r0, min(r0 + cfg.block_m, seg.end)],
                   color="cyan", lw=2)
        a.set(title=f"{name}: segment {g}'s ranked prefix, visiting order\n(first {shown} of "
              f"{seg.prefix_len} keys; cyan: tile stops at tau={args.tau:g})",
              xlabel="prefix key, visiting order", ylabel="query")
    fig.suptitle(f"structured workload N={N}, {cfg.ordering} ordering, {cfg.stop_rule} stop rule "
                 "(log10 attention probability)")
    fig.tight_layout()
    return _save(fig, args.out or RESULTS / f"heatmap_n{N}.png")


# ------------------------------------------------------------------- (b), (c) bench results

def _label(row: dict, path: str) -> str:
    """'stop_rule/ordering' from the row's config repr, else from the file name
    (older bench_op files have no config field: h100_<date>_gain_tiers.json)."""
    found = dict(re.findall(r"(stop_rule|ordering)='(\w+)'", row.get("config", "")))
    if len(found) == 2:
        return f"{found['stop_rule']}/{found['ordering']}"
    m = re.search(r"(gain|remaining)_(tiers|sort)", pathlib.Path(path).stem)
    return f"{m[1]}/{m[2]}" if m else pathlib.Path(path).stem


def load_rows(paths) -> list[dict]:
    rows = []
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        if "rows" not in data:
            sys.exit(f"plots: {p} is not a bench_op.py results file (no 'rows')")
        card = data.get("meta", {}).get("card", "")
        rows += [dict(r, label=_label(r, p), card=card) for r in data["rows"]]
    return rows


def _lines(rows, key_fn, x, y):
    """{line key: ([x...], [y...])} sorted by x, deduplicated on x (later files win)."""
    lines = {}
    for r in rows:
        lines.setdefault(key_fn(r), {})[r[x]] = r[y]
    return {key: tuple(zip(*sorted(pts.items()))) for key, pts in sorted(lines.items())}


def _styles(keys):
    """A colour per distinct key."""
    colours = plt.get_cmap("tab10").colors
    return {k: colours[i % len(colours)] for i, k in enumerate(dict.fromkeys(keys))}


DASHES = ["-", "--", ":", "-."]


def tau_plot(rows, out) -> str:
    """(b) density and relative error vs tau: colour = stop rule / ordering, line style = N.
    tau = 0 (dense) has no place on a log axis and is left out."""
    sparse = [r for r in rows if r["tau"] > 0]
    colour = _styles(r["label"] for r in sparse)
    dash = {n: DASHES[i % len(DASHES)] for i, n in enumerate(sorted({r["N"] for r in sparse}))}
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    for y, a in zip(("density", "rel_err"), ax):
        for (label, n), (xs, ys) in _lines(sparse, lambda r: (r["label"], r["N"]), "tau", y).items():
            a.plot(xs, ys, marker="o", color=colour[label], ls=dash[n],
                   label=f"{label} N={n // 1024}K")
        a.set(xscale="log", xlabel="tau (threshold)", ylabel=y.replace("_", ". "),
              yscale="log" if y == "rel_err" else "linear")
        a.grid(alpha=0.3, which="both")
    ax[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("S2O: density and error vs tau (" + _card(rows) + ")")
    fig.tight_layout()
    return _save(fig, out)


def speedup_plot(rows, out) -> str:
    """(c) speedup over the best dense SDPA vs N: colour = stop rule / ordering, one line per
    tau (annotated at its last point)."""
    colour = _styles(r["label"] for r in rows)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for (label, tau), (xs, ys) in _lines(rows, lambda r: (r["label"], r["tau"]), "N",
                                         "speedup").items():
        ax.plot(xs, ys, marker="o", color=colour[label])
        ax.annotate(f"{tau:g}", (xs[-1], ys[-1]), xytext=(4, 0), textcoords="offset points",
                    fontsize=7, color=colour[label], va="center")
    for label, c in colour.items():
        ax.plot([], [], color=c, label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ns = sorted({r["N"] for r in rows})
    ax.set(xscale="log", yscale="log", xlabel="N (tokens)", ylabel="speedup vs best dense SDPA",
           title="S2O speedup vs N, lines labelled by tau (" + _card(rows) + ")")
    ax.set_xticks(ns, [f"{n // 1024}K" for n in ns])
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([0.25, 0.5, 1, 2, 4, 8])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="stop rule / ordering")
    fig.tight_layout()
    return _save(fig, out)


def _card(rows) -> str:
    return rows[0].get("card", "") if rows else ""


def results(args) -> list[str]:
    rows = load_rows(args.files)
    out = pathlib.Path(args.out_dir)
    return [tau_plot(rows, out / f"{args.prefix}tau.png"),
            speedup_plot(rows, out / f"{args.prefix}speedup.png")]


# --------------------------------------------------------------------------- claims

def claims(args) -> str:
    with open(args.file) as f:
        data = json.load(f)
    if "runs" not in data:
        sys.exit(f"plots: {args.file} is not a paper_claims.py results file (no 'runs')")
    runs = data["runs"]
    fig, ax = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.3), squeeze=False)
    for a, run in zip(ax[0], runs):
        methods = dict.fromkeys(r["method"] for r in run["rows"])
        for m in methods:
            pts = sorted((r["density"], r["mse"]) for r in run["rows"] if r["method"] == m)
            a.plot(*zip(*pts), marker="o", label=m)
        title = f"N={run['N']}"
        for c in run.get("comparisons", []):
            if c["x"] == "density" and c.get("mse_ratio_median"):
                title += (f"\nvs {c['baseline']} (median): MSE x{c['mse_ratio_median']:.1f} at "
                          f"matched density, density x{c['density_ratio_median']:.2f} at matched "
                          "MSE")
        a.set(xscale="log", yscale="log", xlabel="density (computed / causal QK pairs)",
              ylabel="MSE vs dense", title=title)
        a.title.set_fontsize(8)
        a.grid(alpha=0.3, which="both")
        a.legend()
    meta = data.get("meta", {})
    fig.suptitle(f"S2O vs block-sparse, same attention and stop rule ({meta.get('device', '')}, "
                 f"{meta.get('kernel', '')})", fontsize=10)
    fig.tight_layout()
    out = args.out or RESULTS / f"{pathlib.Path(args.file).stem}.png"
    return _save(fig, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("heatmap", help="(a) one head's attention and S2O's visiting order (CPU)")
    h.add_argument("--seq-len", type=int, default=4096)
    h.add_argument("--head", type=int, default=0, choices=range(8), metavar="0..7")
    h.add_argument("--segment", type=int, default=None, help="segment index (default: the last)")
    h.add_argument("--tau", type=float, default=0.1, help="threshold for the stop marks")
    h.add_argument("--ordering", choices=["tiers", "sort"], default=S2OConfig.ordering)
    h.add_argument("--show", type=int, default=1024, help="prefix keys shown (visiting order)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", default=None, help=f"PNG (default {RESULTS}/heatmap_n<N>.png)")
    r = sub.add_parser("results", help="(b) density/error vs tau and (c) speedup vs N")
    r.add_argument("files", nargs="+", help="bench_op.py JSON files")
    r.add_argument("--out-dir", default=str(RESULTS))
    r.add_argument("--prefix", default="h100_", help="file name prefix of the PNGs")
    c = sub.add_parser("claims", help="MSE vs density per method from paper_claims.py JSON")
    c.add_argument("file")
    c.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    return {"heatmap": heatmap, "results": results, "claims": claims}[args.cmd](args)


if __name__ == "__main__":
    main()
