"""Property-based suite: every SDPA call either runs as before or runs S2O within tolerance.

Each example draws one scaled_dot_product_attention call (batch, lengths, head dims, dtype,
is_causal, mask kind and broadcast shape, dropout, GQA, scale, input layout, grad, dynamic
shapes, a second call at another length (recompilation), autocast, a layout-sensitive op after
the call), compiles it through an S2O backend (tau = 0, so a rewritten call must equal dense
attention up to rounding) and through plain torch.compile with the same inner compiler, and
compares:
  - not rewritten: bitwise equal (NaN == NaN);
  - rewritten: close at the dtype's tolerance, same shape, dtype and strides;
  - the call raises in plain torch.compile: it raises through the S2O backend too.

Profiles (hypothesis settings): "ci" (default, 50 examples, derandomized) and "long" (on demand):
    S2O_HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_fuzz_backend.py -s
The counts of rewrites and of skips per reason are printed at the end of the session and
checked by test_fuzz_covered_rewrites_and_skips.

inner="aot_eager" for most examples: it runs the graph AOT autograd hands to Inductor, without
Inductor's codegen, ~0.1 s per compile on CPU instead of ~2 s; a few examples go through Inductor
(test_sdpa_call_through_inductor; tests/test_robustness.py compiles whole models with it).
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2o_compile import S2OConfig, make_backend

CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                walk_chunk=32, sink_tokens=8,
                local_window=16, min_seq_len=0, stop_rule="gain")
INNER = "aot_eager"

settings.register_profile(
    "ci", max_examples=50, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=400, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("S2O_HYPOTHESIS_PROFILE", "ci")
INDUCTOR_EXAMPLES = {"ci": 5, "long": 40}

# Rewrites and skips per reason, over the examples run in this session (read by conftest's summary).
STATS: Counter = Counter()

TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4),
       torch.float16: dict(atol=2e-3, rtol=2e-3),
       torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2)}

MASKS = ("none", "shape_causal", "tril", "input_causal", "padding", "float_causal",
         "float_bias_input", "strict", "window", "all_true")
MASK_INPUTS = ("input_causal", "padding", "float_bias_input")
MASKS_IN_GRAPH = ("shape_causal", "tril", "float_causal", "strict", "window", "all_true")
MASK_SHAPES = ("NN", "1NN", "11NN", "B1NN", "BHNN", "1HNN", "over_batch", "5d")
# k/v head repetitions: query head h must read kv head h // n_rep (HF's repeat_kv); "tile"
# makes it read h % Hkv instead, which the rewrite must not mistake for repeat_kv.
REPEATS = {
    "hf": lambda x, n: x[:, :, None, :, :].expand(x.shape[0], x.shape[1], n, *x.shape[2:])
                                          .reshape(x.shape[0], x.shape[1] * n, *x.shape[2:]),
    "interleave": lambda x, n: x.repeat_interleave(n, dim=1),
    "tile": lambda x, n: x.repeat(1, n, 1, 1),
    "tile_expand": lambda x, n: x[:, None].expand(x.shape[0], n, *x.shape[1:])
                                          .reshape(x.shape[0], n * x.shape[1], *x.shape[2:]),
    "hf_k_tile_v": None,  # k repeated HF-style, v tiled
}
LAYOUTS = ("contiguous", "transposed", "nbhd", "packed", "strided_last", "expanded_batch",
           "mixed")


@dataclass(frozen=True)
class Call:
    B: int
    Hq: int
    Hkv: int
    N: int
    Nkv: int
    D: int
    Dv: int
    kv_batch: int
    dtype: torch.dtype
    is_causal: bool
    mask: str
    mask_shape: str
    dropout: float
    enable_gqa: bool
    scale: float | None
    layout: str
    requires_grad: bool
    dynamic: str  # "": static; "shared": q, k, v split from one input, N dynamic;
    #               "separate": q, k, v inputs each with a dynamic N (unrelated symbols)
    post: str
    seed: int
    autocast: bool = False  # run under torch.autocast("cpu", bfloat16)
    recall: int = 0  # > 0: call again at N + recall (Dynamo recompiles, automatic dynamic)
    repeat: str = ""  # k/v heads repeated in the graph before SDPA (see REPEATS)


@st.composite
def calls(draw) -> Call:
    """One SDPA call. Half of the draws aim at an eligible call (the rewrite is where a wrong
    answer can come from): they keep every dimension that does not decide eligibility random
    (sizes, dtype, GQA, scale, layouts, dynamic shapes, recompilation, the op after the call)
    and pick the deciding ones (mask, causality, dropout, grad, lengths) from the eligible side."""
    eligible = draw(st.booleans())

    def pick(values, eligible_values=None):
        return draw(st.sampled_from(eligible_values if eligible and eligible_values else values))

    B = pick([1, 2, 3])
    N = pick([1, 2, 7, 16, 33, 63, 65, 97, 130, 161])
    Nkv = N + pick([0] * 9 + [1, 17], [0])  # != N: decode step / chunked prefill
    Hq, Hkv = pick([(1, 1), (2, 2), (4, 4), (4, 2), (4, 1), (6, 2), (6, 3)])
    D = pick([32, 64, 80, 128, 256])
    Dv = pick([D] * 9 + [D // 2], [D])  # SDPA allows another value head dim
    kv_batch = pick([B] * 9 + [1], [B])  # SDPA broadcasts a batch-1 k/v
    dtype = pick([torch.float32, torch.float16, torch.bfloat16])
    mask = pick(("none", "shape_causal") + MASKS, ("none", "none", "shape_causal", "tril"))
    mask_shape = pick(MASK_SHAPES[:6] * 3 + MASK_SHAPES[6:], MASK_SHAPES[:6])
    if mask == "padding" and "B" not in mask_shape:
        mask_shape = "B1NN"
    # a mask with is_causal=True: SDPA's CPU kernel applies both, its meta function raises
    if mask == "none":
        is_causal = pick([True, True, False], [True])
    else:
        is_causal = pick([False] * 7 + [True], [False])
    dropout = pick([0.0] * 7 + [0.1], [0.0])
    # enable_gqa=False with Hkv=1 < Hq is SDPA's head broadcast; other head mismatches need GQA
    enable_gqa = draw(st.booleans()) if Hq == Hkv or Hkv == 1 else True
    # scale <= 0 is left out: SDPA's CPU flash kernel returns NaN for it (torch bug, see
    # tests/test_nan_inf.py::test_sdpa_cpu_nonpositive_scale_is_nan_s2o_is_not), S2O does not.
    scale = pick([None, None, 0.125, 0.5, 1.3])
    layout = pick(LAYOUTS)
    requires_grad = pick([False] * 9 + [True], [False])
    dynamic = ""
    if N >= 2 and Nkv == N and mask not in MASK_INPUTS:
        dynamic = pick(["", "", "", "", "shared", "shared", "separate"])
    if dynamic == "shared":
        Dv, kv_batch, layout = D, B, "packed"
    post = pick(["none", "none", "flatten", "view"])
    if post == "view" and layout not in ("transposed", "packed", "mixed"):
        post = "flatten"  # .view needs SDPA's [B, N, H, D] output storage, i.e. such a q
    seed = draw(st.integers(0, 2 ** 16))
    autocast = pick([False] * 9 + [True], [False])
    recall = pick([0, 0, 0, 5, 64])
    repeat = ""
    if Hq != Hkv and kv_batch == B:  # GQA written out in the model, HF style or otherwise
        repeat = pick(["", ""] + list(REPEATS))
        enable_gqa = enable_gqa if not repeat else False
    return Call(B, Hq, Hkv, N, Nkv, D, Dv, kv_batch, dtype, is_causal, mask, mask_shape, dropout,
                enable_gqa, scale, layout, requires_grad, dynamic, post, seed, autocast, recall,
                repeat)


# --- inputs ------------------------------------------------------------------------------------

def _randn(g, shape, dtype):
    return torch.randn(shape, generator=g).to(dtype)


def make_qkv(c: Call):
    """q [B, Hq, N, D], k [kv_batch, Hkv, Nkv, D], v [kv_batch, Hkv, Nkv, Dv] in the drawn
    memory layout."""
    g = torch.Generator().manual_seed(c.seed)
    dt = c.dtype

    def one(B, H, n, D, layout):
        if layout == "contiguous":
            return _randn(g, (B, H, n, D), dt)
        if layout == "transposed":  # HF: [B, N, H, D] storage
            return _randn(g, (B, n, H, D), dt).transpose(1, 2)
        if layout == "nbhd":  # sequence-first storage
            return _randn(g, (n, B, H, D), dt).permute(1, 2, 0, 3)
        if layout == "strided_last":  # head dim not unit-stride
            return _randn(g, (B, H, n, 2 * D), dt)[..., ::2]
        if layout == "expanded_batch":  # stride-0 batch
            return _randn(g, (1, H, n, D), dt).expand(B, H, n, D)
        raise AssertionError(layout)

    packable = c.N == c.Nkv and c.D == c.Dv and c.kv_batch == c.B
    if c.layout == "packed" and packable:  # one fused qkv projection, split
        x = _randn(g, (c.B, c.N, c.Hq + 2 * c.Hkv, c.D), dt)
        if c.dynamic == "shared":  # split inside the compiled function (make_fn)
            return (x.requires_grad_(True) if c.requires_grad else x,)
        q, k, v = x.transpose(1, 2).split([c.Hq, c.Hkv, c.Hkv], dim=1)
    else:
        lay = {"packed": ("contiguous",) * 3,
               "mixed": ("transposed", "contiguous", "nbhd")}.get(c.layout, (c.layout,) * 3)
        q = one(c.B, c.Hq, c.N, c.D, lay[0])
        k = one(c.kv_batch, c.Hkv, c.Nkv, c.D, lay[1])
        v = one(c.kv_batch, c.Hkv, c.Nkv, c.Dv, lay[2])
    if c.requires_grad:
        q = q.detach().requires_grad_(True)
    return q, k, v


def _shape_mask(m, c: Call, B, H):
    """A [N, Nkv] mask in the drawn broadcast shape."""
    n, nk = m.shape[-2:]
    return {"NN": lambda: m,
            "1NN": lambda: m[None],
            "11NN": lambda: m[None, None],
            "B1NN": lambda: m[None, None].expand(B, 1, n, nk),
            "BHNN": lambda: m[None, None].expand(B, H, n, nk),
            "1HNN": lambda: m[None, None].expand(1, H, n, nk),
            # beyond q's shape: eager SDPA raises, compiled SDPA broadcasts its output
            "over_batch": lambda: m[None, None].expand(B + 1, 1, n, nk),
            "5d": lambda: m[None, None, None].expand(2, 1, 1, n, nk)}[c.mask_shape]()


def mask_in_graph(c: Call, q, k):
    """Masks built from shapes inside the compiled function, as compiled HF models do."""
    B, H, n = q.shape[0], q.shape[1], q.shape[2]
    nk = k.shape[2]
    i, j = torch.arange(n, device=q.device), torch.arange(nk, device=q.device)
    if c.mask == "shape_causal":
        m = j[None, :] <= i[:, None]
    elif c.mask == "tril":
        m = torch.ones(n, nk, dtype=torch.bool, device=q.device).tril()
    elif c.mask == "float_causal":
        m = torch.zeros(n, nk, dtype=q.dtype, device=q.device).masked_fill(
            j[None, :] > i[:, None], float("-inf"))
    elif c.mask == "strict":  # row 0 fully masked
        m = j[None, :] < i[:, None]
    elif c.mask == "window":
        m = (j[None, :] <= i[:, None]) & (i[:, None] - j[None, :] < 5)
    elif c.mask == "all_true":
        m = torch.ones(n, nk, dtype=torch.bool, device=q.device)
    else:
        raise AssertionError(c.mask)
    return _shape_mask(m, c, B, H)


def mask_input(c: Call):
    """Masks passed in as runtime tensors (attention_mask of a tokenizer, a learned bias)."""
    g = torch.Generator().manual_seed(c.seed + 1)
    n, nk = c.N, c.Nkv
    causal = torch.ones(n, nk, dtype=torch.bool).tril()
    if c.mask == "input_causal":
        return _shape_mask(causal, c, c.B, c.Hq)
    if c.mask == "padding":  # left padding: the first rows of a padded sequence are fully masked
        pads = torch.randint(0, max(1, nk // 2) + 1, (c.B,), generator=g)
        keep = torch.arange(nk)[None, :] >= pads[:, None]  # [B, Nkv]
        m = causal[None, None] & keep[:, None, None, :]
        return m.expand(c.B, c.Hq if c.mask_shape == "BHNN" else 1, n, nk)
    if c.mask == "float_bias_input":
        return _shape_mask(_randn(g, (n, nk), c.dtype), c, c.B, c.Hq)
    raise AssertionError(c.mask)


def make_fn(c: Call):
    def attend(*args):
        if c.dynamic == "shared":  # one [B, N, H, D] input, as from a fused projection
            x, *mask = args
            q, k, v = x.transpose(1, 2).split([c.Hq, c.Hkv, c.Hkv], dim=1)
        else:
            q, k, v, *mask = args
        attn_mask = mask[0] if mask else (mask_in_graph(c, q, k) if c.mask in MASKS_IN_GRAPH
                                          else None)
        if c.repeat:
            n_rep = c.Hq // c.Hkv
            rk = REPEATS["hf" if c.repeat == "hf_k_tile_v" else c.repeat]
            rv = REPEATS["tile" if c.repeat == "hf_k_tile_v" else c.repeat]
            k, v = rk(k, n_rep), rv(v, n_rep)
        kw = {"enable_gqa": True} if c.enable_gqa else {}
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=c.dropout,
                                           is_causal=c.is_causal, scale=c.scale, **kw)
        if c.post == "flatten":  # HF: back to [B, N, H * D]
            return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1)
        if c.post == "view":  # only valid when SDPA returns [B, N, H, D] storage
            return o.transpose(1, 2).view(o.shape[0], o.shape[2], -1)
        return o
    return attend


# --- running -------------------------------------------------------------------------------------

def run_compiled(fn, calls_args, backend, c: Call):
    """Compile fn once and call it on each argument tuple: ([(output, graphs compiled so far)],
    None) or (None, error)."""
    torch._dynamo.reset()
    for args in calls_args:
        if c.dynamic == "shared":
            torch._dynamo.mark_dynamic(args[0], 1)
        elif c.dynamic == "separate":
            for t in args[:3]:
                torch._dynamo.mark_dynamic(t, 2)
    torch.manual_seed(c.seed)  # same dropout mask in both runs
    try:
        compiled = torch.compile(fn, backend=backend)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.autocast):
            return [(compiled(*args), len(getattr(backend, "reports", ())))
                    for args in calls_args], None
    except Exception as e:  # noqa: BLE001 - compared below: both paths must fail alike
        return None, e


def strides(t):
    """Strides of the dims that matter for the memory layout (size > 1)."""
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


def check_call(c: Call, inner: str = INNER):
    """Compile one call both ways and compare. Returns the S2O decision: "rewritten",
    "skipped:<check>", or "error:both raised"."""
    variants = [c] + ([dataclasses.replace(c, N=c.N + c.recall, Nkv=c.Nkv + c.recall,
                                           seed=c.seed + 1)] if c.recall else [])
    calls_args = [make_qkv(x) + ((mask_input(x),) if x.mask in MASK_INPUTS else ())
                  for x in variants]
    fn = make_fn(c)
    expected, plain_error = run_compiled(fn, calls_args, inner, c)
    backend = make_backend(CFG, inner=inner)
    outs, s2o_error = run_compiled(fn, calls_args, backend, c)
    nodes = [n for r in backend.reports for n in r.nodes]
    if plain_error is not None:
        assert s2o_error is not None, (
            f"plain torch.compile raised {plain_error!r} but the S2O backend ran: "
            f"{[str(n) for n in nodes]}")
        return "error:both raised"
    assert s2o_error is None, f"only the S2O backend raised: {s2o_error!r}"
    assert all(len(r.nodes) == 1 for r in backend.reports), backend.reports
    for x, (out, graphs), (want, _) in zip(variants, outs, expected):
        assert graphs >= 1, "the S2O backend compiled nothing (Dynamo fell back to eager?)"
        compare(x, nodes[graphs - 1], out, want)  # the graph that ran this call
    return "rewritten" if nodes[0].rewritten else f"skipped:{nodes[0].check}"


def mask_is_causal(c: Call) -> bool:
    """Whether the call's mask (if any) is the causal lower triangle at its own length, in a
    shape that does not broadcast SDPA's output beyond q's."""
    if c.mask == "none":
        return c.is_causal
    if c.mask in MASK_INPUTS or c.mask_shape in ("over_batch", "5d"):
        return False
    return {"shape_causal": True, "tril": True, "float_causal": True, "strict": False,
            "window": c.N <= 5, "all_true": c.N == 1}[c.mask]


def compare(c: Call, node, out, expected):
    """One output of the S2O-compiled call against plain torch.compile's."""
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert strides(out) == strides(expected), (out.stride(), expected.stride(), str(node))
    if not node.rewritten:
        assert torch.equal(out.nan_to_num(7.0), expected.nan_to_num(7.0)) and torch.equal(
            out.isnan(), expected.isnan()), f"not rewritten, yet the output changed: {node}"
        return
    assert c.dropout == 0 and not c.requires_grad and c.N == c.Nkv, f"wrongly rewritten: {node}"
    assert mask_is_causal(c), f"wrongly rewritten: {node}"
    assert not c.autocast or c.dtype == torch.bfloat16, f"rewritten under autocast: {node}"
    torch.testing.assert_close(out, expected, **TOL[c.dtype], msg=lambda m: f"{node}\n{m}")


@settings(parent=settings.get_profile(PROFILE))
@given(c=calls())
def test_sdpa_call_runs_as_before_or_as_s2o(c):
    STATS[check_call(c)] += 1


@settings(parent=settings.get_profile(PROFILE), max_examples=INDUCTOR_EXAMPLES[PROFILE])
@given(c=calls())
def test_sdpa_call_through_inductor(c):
    """The same property with Inductor as the inner compiler (as backend="s2o" runs), compared
    with plain torch.compile: ~2 s per example, hence few of them."""
    STATS[check_call(c, inner="inductor")] += 1


def test_fuzz_covered_rewrites_and_skips():
    """The suite above is only as good as its mix: it must have rewritten calls and skipped
    calls for several reasons. Prints the counts (shown with -s or -rA; also in the summary)."""
    if not STATS:
        pytest.skip("the fuzz test did not run in this session")
    print("\nS2O fuzz decisions:", dict(sorted(STATS.items())))
    skip_reasons = {k for k in STATS if k.startswith("skipped:")}
    assert STATS["rewritten"] >= 3, STATS
    assert len(skip_reasons) >= 4, STATS


# Fixed examples: each runs once, whatever the profile draws.
def call(**kw) -> Call:
    base = dict(B=2, Hq=4, Hkv=2, N=65, Nkv=65, D=64, Dv=64, kv_batch=2, dtype=torch.float32,
                is_causal=True, mask="none", mask_shape="NN", dropout=0.0, enable_gqa=True,
                scale=None, layout="contiguous", requires_grad=False, dynamic="", post="none",
                seed=1)
    base.update(kw)
    for name, like in (("kv_batch", "B"), ("Dv", "D"), ("Nkv", "N")):
        if name not in kw:
            base[name] = base[like]
    return Call(**base)


REGRESSIONS = {
    # SDPA's CPU output keeps q's [B, N, H, D] storage; a .view after it relies on that layout.
    "view-after-transposed": (call(layout="transposed", post="view"), "rewritten"),
    "shared-dynamic-mask": (call(B=1, Hkv=4, N=33, Nkv=33, D=32, dtype=torch.bfloat16,
                               is_causal=False, mask="shape_causal", mask_shape="B1NN",
                               enable_gqa=False, scale=0.5, layout="packed", dynamic="shared",
                               post="flatten", seed=2), "rewritten"),
    "packed-f16-view": (call(Hq=6, Hkv=3, N=97, Nkv=97, D=80, Dv=80, dtype=torch.float16,
                             is_causal=False, mask="tril", mask_shape="11NN", layout="packed",
                             post="view", seed=3), "rewritten"),
    # A causal mask that broadcasts SDPA's output beyond q's shape (eager SDPA raises, compiled
    # SDPA returns the broadcast shape): the call must be kept, not shrunk to q's shape.
    "mask-batch-beyond-q": (call(B=1, mask="shape_causal", mask_shape="over_batch",
                                 is_causal=False, seed=4), "skipped"),
    "mask-5d": (call(mask="tril", mask_shape="5d", is_causal=False, seed=5), "skipped"),
    # GQA written out before SDPA: only HF's repeat_kv (h -> h // n_rep) may be undone
    **{f"repeat-{r}": (call(Hq=6, repeat=r, enable_gqa=False, layout="transposed", seed=6),
                       "rewritten") for r in ("hf", "tile_expand", "hf_k_tile_v")},
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions(name):
    c, expected = REGRESSIONS[name]
    assert check_call(c).startswith(expected)
