"""`python -m s2o_compile demo`: S2O on an unmodified Hugging Face model through torch.compile,
then the S2O operator alone against dense SDPA on a structured long-context workload.

Part 1 (skip it with --no-model) builds a small random-init Llama (transformers' own attention
code: SDPA, GQA, rotary, KV cache), compiles it with
    torch.compile(model, backend=make_backend(S2OConfig(min_seq_len=0)))
and prints the rewrite report (which SDPA calls became s2o.sparse_attention, which were kept and
why: a decode step is run too), the graph code around the attention call before and after the
rewrite, and prefill against the same model under plain torch.compile: the density the operator
reports, the logits error and the time. Random weights attend diffusely, so little is skipped
there; the point is the path, and that it is exact where it does not skip.

Part 2 runs the operator on a structured workload (attention concentrated like a real model's)
at several thresholds: density, error against dense SDPA (0 at threshold 0) and time.

CPU runs the PyTorch reference (density and error; speed needs a GPU) on one intra-op thread:
the model (head dim 32) at N 4096, the operator at N 8192, about a minute in all. CUDA runs the
Triton kernels: the model at N 16384 with head dim 128 in bfloat16, the operator at N 32768.
--seq-len sets N for both parts.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
import time

import torch
import torch.nn.functional as F

from . import S2OConfig, make_backend, sparse_attention
from .passes import rewrite_sdpa
from .workload import mass_coverage, structured_qkv

HELP = "S2O on a Hugging Face model through torch.compile, then the operator vs dense SDPA"

DEFAULT_CONFIG = S2OConfig(min_seq_len=0)  # the default threshold and stop rule, at any length
DEFAULT_TAUS = sorted({0.0, 1e-2, 1e-1, DEFAULT_CONFIG.threshold})
S2O_OP = torch.ops.s2o.sparse_attention.default

# Llama shapes per device: head dim = hidden_size / num_attention_heads.
MODEL_SHAPES = {
    "cpu": dict(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                num_key_value_heads=2, num_hidden_layers=2, vocab_size=256),
    "cuda": dict(hidden_size=1024, intermediate_size=2816, num_attention_heads=8,
                 num_key_value_heads=2, num_hidden_layers=2, vocab_size=1024),
}
DEFAULT_SEQ_LEN = {("model", "cpu"): 4096, ("model", "cuda"): 16384,
                   ("op", "cpu"): 8192, ("op", "cuda"): 32768}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, warmup=None):
    """(fn(), ms of that call); a warm-up call first on CUDA (the CPU reference has no JIT)."""
    if warmup if warmup is not None else device == "cuda":
        fn()
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, (time.perf_counter() - t) * 1e3


def _rel_err(out, ref) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


# --- part 1: a Hugging Face model through torch.compile --------------------------------------

def _short(text: str) -> str:
    """Drop the site-packages prefix of the source paths in a report."""
    return re.sub(r"\S*/site-packages/", "", text)


def excerpt(code: str, needles=("scaled_dot_product_attention", "s2o.sparse_attention"),
            before: int = 1, after: int = 2, width: int = 200) -> list[str]:
    """The first attention call of a graph's code with `before` / `after` lines around it,
    without Dynamo's `; x = None` tails, cut to `width` characters."""
    lines = code.splitlines()
    i = next((j for j, line in enumerate(lines) if any(n in line for n in needles)), None)
    if i is None:
        return []
    out = []
    for line in lines[max(i - before, 0):i + after + 1]:
        line = re.sub(r";\s+[\w ,=]*= None$", "", line.strip())
        out.append(line if len(line) <= width else line[:width - 3] + "...")
    return out


class Probe:
    """A capturing backend: records each graph's code before and after the rewrite and runs the
    rewritten graph eagerly, recording the density [B, Hq] every s2o.sparse_attention returns
    (under Inductor the op's stats are not reachable from outside the compiled code)."""

    def __init__(self, config: S2OConfig):
        self.config = config
        self.graphs = []     # (report, code before, code after) per compiled graph
        self.densities = []  # one [B, Hq] tensor per executed S2O call

    def _record(self, *args):
        out, density = S2O_OP(*args)
        self.densities.append(density)
        return out, density

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        before = gm.code
        report = rewrite_sdpa(gm, self.config)
        self.graphs.append((report, before, gm.code))
        for node in gm.graph.nodes:
            if node.op == "call_function" and node.target is S2O_OP:
                node.target = self._record
        gm.recompile()
        return gm.forward


def build_model(device: str, seq_len: int):
    from .tiny_models import _transformers

    tf = _transformers()
    shapes = MODEL_SHAPES[device]
    config = tf.LlamaConfig(**shapes, max_position_embeddings=seq_len + 1,
                            attn_implementation="sdpa")
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return tf.LlamaForCausalLM(config).to(device, dtype).eval()


@torch.no_grad()
def model_demo(device: str, N: int, cfg: S2OConfig) -> None:
    model = build_model(device, N)
    c = model.config
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    print(f"== Part 1: S2O in an unmodified Hugging Face Llama through torch.compile ({device})")
    print(f"model: random-init LlamaForCausalLM, {c.num_hidden_layers} layers, hidden "
          f"{c.hidden_size}, {c.num_attention_heads} query / {c.num_key_value_heads} kv heads "
          f"(head dim {c.hidden_size // c.num_attention_heads}), {dtype}; prefill of {N} tokens")
    print(f"config: S2OConfig(min_seq_len=0): threshold {cfg.threshold}, stop_rule "
          f"{cfg.stop_rule!r}, segment {cfg.segment_size}, sink {cfg.sink_tokens}, "
          f"local window {cfg.local_window}")
    ids = torch.randint(0, c.vocab_size, (1, N), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)

    torch._dynamo.reset()
    dense = torch.compile(model)
    dense_logits, t_dense = _time(lambda: dense(ids).logits, device, warmup=True)  # 1st: compile

    torch._dynamo.reset()
    backend = make_backend(cfg)
    s2o = torch.compile(model, backend=backend)
    print("\ns2o = torch.compile(model, backend=make_backend(cfg))   # Inductor after the rewrite")
    s2o_logits, t_s2o = _time(lambda: s2o(ids).logits, device, warmup=True)
    print("print(*backend.reports, sep='\\n'):")
    for report in backend.reports:
        print("  " + _short(str(report)).replace("\n", "\n  "))

    # The same rewrite with a capturing backend: graph code, per-call density, and a decode step.
    torch._dynamo.reset()
    probe = Probe(cfg)
    probed = torch.compile(model, backend=probe)
    prefill = probed(ids)
    n_prefill = len(probe.graphs)
    densities = [d.mean().item() for d in probe.densities]
    # transformers >= 5.2x names the KV cache `cache` (`past_key_values` before, now deprecated)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    probed(ids[:, -1:], **{name: getattr(prefill, name)})
    torch._dynamo.reset()
    decode = [n for report, _, _ in probe.graphs[n_prefill:] for n in report.nodes]
    if decode:
        kept = [n for n in decode if not n.rewritten]
        reasons = sorted({f"{n.check}: {n.reason}" for n in kept})
        print(f"a decode step (1 new token on the KV cache), same rewrite: {len(kept)} of "
              f"{len(decode)} SDPA call(s) kept, {'; '.join(reasons) or '-'}")

    graph = next((g for g in probe.graphs[:n_prefill] if g[0].num_rewritten), None)
    if graph is not None:
        print("\ngraph code around the first attention call, before the rewrite:")
        print("\n".join("  " + line for line in excerpt(graph[1])))
        print("after:")
        print("\n".join("  " + line for line in excerpt(graph[2])))

    err = _rel_err(s2o_logits, dense_logits)
    same = (s2o_logits.argmax(-1) == dense_logits.argmax(-1)).float().mean().item()
    print("\nprefill, S2O vs dense (the same model under plain torch.compile):")
    if densities:
        print(f"  density (computed / causal QK pairs, per layer, mean over heads): "
              f"{', '.join(f'{d:.3f}' for d in densities)}")
    print(f"  logits rel. error {err:.2e}, same next token at {same:.1%} of positions")
    print(f"  time (after a compiling call): S2O {t_s2o:.1f} ms, dense {t_dense:.1f} ms")
    if device == "cpu":
        print("  (CPU: the PyTorch reference of S2O, not built for speed)")
    if densities and min(densities) > 0.9995:
        print("  (every key visited: random weights attend diffusely, so no walked chunk's gain "
              "fell below tau's share of the mass; part 2 has attention concentrated like a "
              "trained model's)")
    elif densities:
        print("  (random weights attend diffusely, the hard case: skipped keys still carry mass; "
              "part 2 has attention concentrated like a trained model's)")
    print()


# --- part 2: the operator on the structured workload ------------------------------------------

@torch.no_grad()
def operator_demo(device: str, N: int, taus, base: S2OConfig) -> None:
    H, Hkv, D = (32, 8, 128) if device == "cuda" else (8, 2, 128)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    print(f"== Part 2: the S2O operator vs dense SDPA on the structured long-context workload "
          f"({device})")
    print(f"B=1 Hq={H} Hkv={Hkv} N={N} D={D} {str(dtype).replace('torch.', '')}; "
          f"stop_rule {base.stop_rule!r}, min_seq_len 0")
    q, k, v = structured_qkv(1, H, Hkv, N, D, dtype=dtype, device=device, seed=0)
    cov = mass_coverage(q, k, rows=16)
    print(f"workload: 90% of each row's attention mass sits in {cov[0.9]:.1%} of its keys, "
          f"95% in {cov[0.95]:.1%}")
    ref, t_dense = _time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                enable_gqa=True), device)
    print(f"{'threshold':>10} {'density':>8} {'rel.err':>9} {'time ms':>8}   "
          f"(dense SDPA {t_dense:.1f} ms)")
    for tau in taus:
        cfg = base.replace(threshold=tau)
        (out, density), t = _time(lambda: sparse_attention(q, k, v, enable_gqa=True, config=cfg,
                                                           return_stats=True), device)
        mark = "  (default)" if tau == S2OConfig().threshold else ""
        print(f"{tau:>10g} {density.mean().item():>8.3f} {_rel_err(out, ref):>9.2e} "
              f"{t:>8.1f}{mark}")
    if device == "cpu":
        print("(CPU: the PyTorch reference runs; it shows density and error, speed needs a GPU)")


def demo(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if device == "cpu":
        # The CPU reference is many small ops: on a shared machine each multi-threaded op waits for
        # a busy core (measured 10-20x slower with 2 threads on a 2-core box under load).
        torch.set_num_threads(1)
        print("(CPU: one intra-op thread, set for the demo)")
    try:
        if not args.no_model:
            model_demo(device, args.seq_len or DEFAULT_SEQ_LEN["model", device], DEFAULT_CONFIG)
        operator_demo(device, args.seq_len or DEFAULT_SEQ_LEN["op", device], args.taus,
                      DEFAULT_CONFIG)
    finally:
        torch.set_num_threads(threads)
    print(f"demo done in {time.perf_counter() - t0:.0f} s")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens for both parts (default: the model 4096 on CPU, 16384 on GPU; the "
                        "operator 8192 on CPU, 32768 on GPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda when a GPU is available, else cpu")
    p.add_argument("--taus", type=float, nargs="+", default=DEFAULT_TAUS,
                   help=f"thresholds of part 2 (default {' '.join(map(str, DEFAULT_TAUS))})")
    p.add_argument("--no-model", action="store_true",
                   help="skip part 1 (the Hugging Face model through torch.compile)")


def command(p: argparse.ArgumentParser, args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    if args.seq_len is not None and args.seq_len < 1:
        p.error("--seq-len must be >= 1")
    if any(not 0 <= t < 1 for t in args.taus):
        p.error("--taus must be in [0, 1)")
    if not args.no_model and importlib.util.find_spec("transformers") is None:
        p.exit(1, "s2o demo: part 1 needs Hugging Face transformers (pip install transformers); "
                  "run with --no-model for the operator part alone\n")
    return demo(args)
