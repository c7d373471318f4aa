"""rewrite_sdpa: replace eligible scaled_dot_product_attention calls of an FX graph by S2O.

Works on Dynamo graphs (torch._C._nn.scaled_dot_product_attention, before AOT: afterwards SDPA is
split into backend-specific ops and enable_gqa is gone) and on torch.export / ATen graphs
(aten.scaled_dot_product_attention.default). Eligibility is a list of named checks; the first one
that fails is recorded as the reason a node is kept. Any unexpected error while looking at a node
skips that node (check "analysis_error"): a compiled model must never crash because of this pass.
"""
from __future__ import annotations

import logging
import operator
from dataclasses import dataclass

import torch
from torch.fx import Graph, GraphModule, Node

from ..config import S2OConfig
from ..ops import config_args, min_chunk_queries  # importing ops registers torch.ops.s2o.*
from ..validation import MAX_HEAD_DIM, SUPPORTED_DTYPES, needs_enable_gqa
from ._fx import (layout_order, may_mutate, meta_value, same_shape, same_size, shape_str,
                  size_expr, static_int, tensor_value, user_location, value_key)
from .causal_mask import prove_causal
from .gqa import unwrap_pair
from .report import REWRITTEN, SKIPPED, NodeReport, RewriteReport

log = logging.getLogger("s2o_compile")

SDPA_TARGETS = (torch._C._nn.scaled_dot_product_attention,
                torch.ops.aten.scaled_dot_product_attention.default)
S2O_OP = torch.ops.s2o.sparse_attention.default
aten = torch.ops.aten
_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None,
             "enable_gqa": False}


@dataclass
class SdpaCall:
    """One SDPA node with its arguments by name, and what the checks found out."""

    node: Node
    args: dict
    proofs: dict | None = None  # mask proofs of this graph, shared: HF feeds one mask to all layers
    k: Node | None = None  # the K/V the op will read (repeat_kv undone)
    v: Node | None = None
    order: list[int] | None = None  # memory order of SDPA's output, which the rewrite keeps
    config: S2OConfig = S2OConfig()  # static lengths for which the op runs dense keep SDPA

    def value(self, name):
        return tensor_value(self.args[name])


def is_sdpa(node: Node) -> bool:
    return node.op == "call_function" and node.target in SDPA_TARGETS


def sdpa_call(node: Node, proofs: dict | None = None) -> SdpaCall:
    args = dict(_DEFAULTS)
    args.update(zip(_PARAMS, node.args))
    args.update(node.kwargs)
    return SdpaCall(node, args, {} if proofs is None else proofs)


# --- eligibility checks: each returns None (pass) or a sentence (why the node is kept) ---------

def check_rank(c: SdpaCall):
    vals = [c.value(n) for n in ("query", "key", "value")]
    if any(v is None for v in vals):
        return "query, key and value must be traced tensors"
    if any(v.dim() != 4 for v in vals):
        return f"S2O takes 4-D [B, H, N, D] tensors, got {[v.dim() for v in vals]}-D"
    q, k, v = vals
    if not (same_size(q.shape[0], k.shape[0]) and same_size(k.shape[0], v.shape[0])):
        return "query, key and value batch sizes differ (broadcast batch)"
    out = tensor_value(c.node)
    if out is None or not same_shape(out.shape, q.shape[:3] + v.shape[3:]):
        return (f"SDPA's output {shape_str(out)} is not [B, Hq, N, Dv] of the query "
                "(broadcast from the mask)")
    return None


def check_dtype(c: SdpaCall):
    q, k, v = (c.value(n) for n in ("query", "key", "value"))
    if q.dtype not in SUPPORTED_DTYPES:
        return f"dtype {q.dtype} is not supported (float16, bfloat16, float32)"
    if k.dtype != q.dtype or v.dtype != q.dtype:
        return f"mixed dtypes q={q.dtype} k={k.dtype} v={v.dtype}"
    out = tensor_value(c.node)
    if out is not None and out.dtype != q.dtype:  # autocast casts SDPA's inputs, not the op's
        return (f"SDPA returns {out.dtype} from {q.dtype} inputs (autocast): the op would "
                f"return {q.dtype}")
    return None


def check_head_dim(c: SdpaCall):
    q, k, v = (c.value(n) for n in ("query", "key", "value"))
    d = static_int(q.shape[-1])
    if d is None:
        return ("the head dim is symbolic (torch.compile(fn, dynamic=True) on a function that "
                "takes q, k and v makes every dim symbolic: compile the module that projects "
                "them, or mark only the sequence dim with torch._dynamo.mark_dynamic(x, 2))")
    if static_int(k.shape[-1]) != d or static_int(v.shape[-1]) != d:
        return f"head dims differ: q {d}, k {k.shape[-1]}, v {v.shape[-1]} (S2O needs one head dim)"
    if not 1 <= d <= MAX_HEAD_DIM:
        return f"head dim {d} exceeds {MAX_HEAD_DIM}"
    return None


def check_seq_len(c: SdpaCall):
    """Self-attention prefill (q_len == kv_len), or a chunked prefill: q_len < kv_len with an
    explicit mask, which check_causal must then prove lower-right causal (is_causal=True
    aligns to the upper left in SDPA, which is no chunk of a prefill)."""
    q, k, v = (c.value(n) for n in ("query", "key", "value"))
    q_len, kv_len = q.shape[2], k.shape[2]
    if not same_size(q_len, kv_len):
        differ = (f"q_len {q_len} != kv_len {kv_len}"
                  if static_int(q_len) is not None and static_int(kv_len) is not None else
                  f"q_len {q_len} and kv_len {kv_len} are not provably equal (two symbols)")
        if c.args["attn_mask"] is None:
            how = ("is_causal=True aligns to the upper left in SDPA (query i sees keys 0..i), "
                   "which is no chunked prefill" if c.args["is_causal"] is True else
                   "no mask: every query sees every key (a decode step or cross-attention)")
            return (f"{differ}, {how}; S2O serves self-attention prefill and chunked prefill "
                    "with a lower-right causal mask")
        if not _known_true(kv_len >= q_len):
            return f"q_len {q_len} is not provably at most kv_len {kv_len}"
        n, limit = static_int(q_len), min_chunk_queries(c.config)
        if n is not None and n < limit:
            return (f"q_len {n} != kv_len {kv_len}: a decode step or a chunk of fewer than "
                    f"{limit} queries runs faster dense, so the op would run SDPA here")
    if not same_size(kv_len, v.shape[2]):
        return f"key length {kv_len} and value length {v.shape[2]} are not provably equal"
    return None


def check_min_seq_len(c: SdpaCall):
    """Runs after every other check but the layout's, so that its hint (lower min_seq_len)
    is only given for a call that would otherwise be rewritten."""
    n, min_len = static_int(c.value("key").shape[2]), c.config.min_seq_len
    if n is not None and n < min_len:  # symbolic: rewritten, the op checks at run time
        return (f"N={n} < min_seq_len={min_len}: the op would run dense SDPA here, so the "
                "call is left as it is (lower S2OConfig.min_seq_len to force S2O)")
    return None


def _known_true(cond) -> bool:
    """A size relation that holds for every value of its symbols (a plain bool as it is)."""
    if isinstance(cond, bool):
        return cond
    from torch.fx.experimental.symbolic_shapes import statically_known_true
    return bool(statically_known_true(cond))


def check_inference(c: SdpaCall):
    dropout = c.args["dropout_p"]
    if isinstance(dropout, Node) or dropout != 0:
        return f"dropout_p={dropout}: S2O is inference-only"
    names = [n for n in ("query", "key", "value", "attn_mask")
             if isinstance(c.value(n), torch.Tensor) and c.value(n).requires_grad]
    if names:
        return (f"{', '.join(names)} require grad (training / grad mode): "
                "S2O is inference-only and has no backward")
    return None


def check_causal(c: SdpaCall):
    is_causal, mask = c.args["is_causal"], c.args["attn_mask"]
    if not isinstance(is_causal, bool):
        return f"is_causal is not a constant ({is_causal})"
    if mask is None:
        return None if is_causal else "non-causal attention (is_causal=False, no mask)"
    if not isinstance(mask, Node):
        return "the mask is not a graph value"
    q_len, kv_len = c.value("query").shape[2], c.value("key").shape[2]
    key = (mask, size_expr(q_len), size_expr(kv_len))
    if key not in c.proofs:
        c.proofs[key] = prove_causal(mask, q_len, kv_len)
    reason = c.proofs[key]
    return None if reason is None else f"explicit mask not proven causal: {reason}"


def check_gqa(c: SdpaCall):
    q = c.value("query")
    k_node, v_node, n_rep = unwrap_pair(c.args["key"], c.args["value"])
    k, v = tensor_value(k_node), tensor_value(v_node)
    hq, hk, hv = (static_int(x.shape[1]) for x in (q, k, v))
    if None in (hq, hk, hv):
        return "head counts are symbolic"
    if hk != hv:
        return f"key heads {hk} != value heads {hv}"
    # a single key/value head without enable_gqa: SDPA broadcasts it, the op's GQA of one group
    if needs_enable_gqa(hq, hk) and not (c.args["enable_gqa"] or n_rep > 1):
        return f"query heads {hq} != key/value heads {hk} without enable_gqa"
    if hk == 0 or hq % hk:
        return f"query heads {hq} are not a multiple of key/value heads {hk}"
    c.k, c.v = k_node, v_node
    return None


def check_layout(c: SdpaCall):
    """SDPA's output follows the query's memory layout (e.g. [B, N, H, D] storage for HF); the op
    returns contiguous [B, H, N, D], so the rewrite restores SDPA's layout: later views depend on
    it. That needs the layout to be known."""
    out = tensor_value(c.node)
    c.order = layout_order(out) if out is not None else None
    if c.order is None:
        return "the layout of SDPA's output is data-dependent"
    return None


CHECKS = (
    ("rank", check_rank),
    ("dtype", check_dtype),
    ("head_dim", check_head_dim),
    ("seq_len", check_seq_len),
    ("inference", check_inference),
    ("causal", check_causal),
    ("gqa", check_gqa),
    ("min_seq_len", check_min_seq_len),
    ("layout", check_layout),
)


def first_failure(c: SdpaCall):
    """(check name, reason) of the first failing check, or None when the node is eligible."""
    for name, check in CHECKS:
        reason = check(c)
        if reason is not None:
            return name, reason
    return None


# --- graph surgery ---------------------------------------------------------------------------

def _scale_arg(c: SdpaCall):
    """SDPA's scale as the op's float argument: 1/sqrt(D) by default; a SymFloat node as is."""
    scale = c.args["scale"]
    if scale is None:
        return static_int(c.value("query").shape[-1]) ** -0.5
    return float(scale) if isinstance(scale, (int, float)) else scale


def _restore_layout(order: list[int]):
    """Steps (target, args, kwargs) giving a contiguous tensor the memory order `order`:
    permute, copy to contiguous, permute back. The strides SDPA's output had, at one copy."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return [(aten.permute.default, (order,), {}),
            (aten.clone.default, (), {"memory_format": torch.contiguous_format}),
            (aten.permute.default, (inverse,), {})]


def _replace(c: SdpaCall, cfg: S2OConfig) -> None:
    """Swap the SDPA node for getitem(s2o.sparse_attention(...), 0) in SDPA's output layout;
    drop what only fed it. Fake values are computed before the graph changes."""
    node, graph = c.node, c.node.graph
    steps = [] if c.order == sorted(c.order) else _restore_layout(c.order)
    key, val = value_key(node), meta_value(node)
    kept = {k: node.meta[k] for k in ("stack_trace", "nn_module_stack", "source_fn_stack")
            if k in node.meta}
    fakes = []
    if key is not None:
        fake = val.new_empty(val.shape)  # contiguous, as the op returns it
        fakes = [(fake, val.new_empty((val.shape[0], val.shape[1]), dtype=torch.float32)), fake]
        for target, args, kwargs in steps:
            fakes.append(target(fakes[-1], *args, **kwargs))
    args = (c.args["query"], c.k, c.v, _scale_arg(c), *config_args(cfg))
    with graph.inserting_before(node):
        new = [graph.call_function(S2O_OP, args)]
        new.append(graph.call_function(operator.getitem, (new[0], 0)))
        for target, step_args, kwargs in steps:
            new.append(graph.call_function(target, (new[-1], *step_args), kwargs))
    for n, fake in zip(new, fakes):
        n.meta.update({key: fake, **kept})
    inputs = node.all_input_nodes
    node.replace_all_uses_with(new[-1])
    graph.erase_node(node)
    try:
        _erase_dead(inputs)
    except Exception:  # noqa: BLE001 - leftovers only cost time, the rewrite itself is done
        log.warning("s2o: could not remove dead nodes after rewriting %s", node.name,
                    exc_info=True)


def _erase_dead(nodes) -> None:
    """Remove what only fed the replaced SDPA (mask subgraph, repeat_kv), nothing else.

    A whole-graph eliminate_dead_code would also drop unused in-place method calls of Dynamo
    graphs, which fx considers pure.
    """
    todo = list(nodes)
    while todo:
        n = todo.pop()
        if n.graph is None or n.users or n.op in ("placeholder", "output", "get_attr"):
            continue
        if n.is_impure() or may_mutate(n):
            continue
        inputs = n.all_input_nodes
        n.graph.erase_node(n)
        todo.extend(inputs)


def _rewrite_note(c: SdpaCall) -> str:
    hq, hk = c.value("query").shape[1], tensor_value(c.k).shape[1]
    note = "replaced by s2o.sparse_attention"
    if c.k is not c.args["key"]:
        note += f" (repeat_kv removed: {hq} query heads read {hk} kv heads)"
    elif hk != hq:
        note += f" (native GQA: {hq} query heads read {hk} kv heads)"
    return note


def _decide(c: SdpaCall, cfg: S2OConfig) -> NodeReport:
    node = c.node
    shapes = " ".join(f"{n[0]}{shape_str(c.value(n))}" for n in ("query", "key", "value"))
    if isinstance(c.args["attn_mask"], Node):
        shapes += f" mask{shape_str(c.value('attn_mask'))}"
    report = NodeReport(node.name, user_location(node), shapes, SKIPPED)
    try:
        failure = first_failure(c)
        if failure is None:
            _replace(c, cfg)
            report.decision, report.reason = REWRITTEN, _rewrite_note(c)
            log.info("s2o: rewrote %s at %s (%s)", report.node, report.location, shapes)
            return report
        report.check, report.reason = failure
        log.info("s2o: kept %s at %s: %s: %s", report.node, report.location, *failure)
    except Exception as e:  # noqa: BLE001 - never crash the user's compile
        report.check, report.reason = "analysis_error", f"{type(e).__name__}: {e}"
        log.warning("s2o: kept %s at %s: analysis_error: %s", report.node, report.location,
                    report.reason, exc_info=True)
    return report


def rewrite_graph(graph: Graph, config: S2OConfig | None = None, name: str = "") -> RewriteReport:
    """Rewrite the eligible SDPA nodes of a Graph in place; the caller recompiles its module."""
    cfg = config if config is not None else S2OConfig()
    if not isinstance(cfg, S2OConfig):
        raise TypeError(f"s2o: config must be an S2OConfig, got {type(cfg).__name__}")
    report, proofs = RewriteReport(graph=name), {}
    for node in [n for n in graph.nodes if is_sdpa(n)]:
        call = sdpa_call(node, proofs)
        call.config = cfg
        report.nodes.append(_decide(call, cfg))
    if report.num_rewritten:
        graph.lint()
    return report


def rewrite_sdpa(gm: GraphModule | Graph, config: S2OConfig | None = None) -> RewriteReport:
    """Replace the eligible SDPA calls of gm by torch.ops.s2o.sparse_attention, in place.

    Returns a RewriteReport: per SDPA node its location, shapes, decision and reason.
    """
    graph = gm.graph if isinstance(gm, GraphModule) else gm
    owner = gm if isinstance(gm, GraphModule) else graph.owning_module
    name = ""
    if owner is not None:
        meta = getattr(owner, "meta", {}) or {}
        name = str(meta.get("dynamo_compile_id", "") or "")
    report = rewrite_graph(graph, config, name)
    if report.num_rewritten and owner is not None:
        owner.recompile()
    return report
