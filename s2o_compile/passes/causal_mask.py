"""Prove that an explicit SDPA mask is the causal lower triangle, so S2O can replace the call.

With q_len < kv_len (a chunked prefill over a KV cache) the triangle is aligned to the lower
right: query i (position kv_len - q_len + i) sees keys 0 .. kv_len - q_len + i.

Compiled HF models pass SDPA a boolean [B, 1, N, N] mask built from shapes (arange, le, expand)
instead of is_causal=True. Such a mask is accepted only when

1. it is boolean, or an additive float mask that is 0 on the triangle and at most MASKED_BIAS
   (-1e4) off it: -inf, finfo.min and -1e4 are what models write. A logit pushed down by 1e4
   gets a weight of exactly 0 in float32 (exp(-104) rounds to 0) unless it exceeded its row's
   largest seen logit by ~1e4, so such a mask gives the boolean triangle's attention (where
   a masked logit is NaN or +inf, SDPA's sum with the bias spreads NaN into the row; S2O skips
   masked keys as a boolean mask does); any other float mask is a bias S2O cannot apply;
2. its subgraph depends on shapes only: walking back from the mask reaches no tensor placeholder
   (no attention_mask / padding input), no module attribute and no data-dependent size; sizes
   (SymInt values) are the leaves;
3. nothing outside the subgraph writes into it (no in-place user);
4. evaluated for real, it equals the lower triangle. A static graph runs at its traced size only
   (Dynamo guards on shapes), so that size is evaluated. A dynamic graph is evaluated at two sizes:
   the traced one (capped) and a larger one that also exceeds every integer constant of the
   subgraph, so that a sliding window or a chunk (a constant such as 4096) shows up.

For dynamic graphs step 4 is a test at two sizes, not a formal proof; the constant rule catches the
masks models actually build (causal, sliding window, chunked, padded).
"""
from __future__ import annotations

import math

import sympy
import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.fx import Graph, GraphModule, Node

from ._fx import may_mutate, meta_value, tensor_value

MAX_MASK_ELEMENTS = 1 << 34  # largest static mask evaluated (the model builds the same mask itself)
MAX_DYNAMIC_MASK_ELEMENTS = 1 << 28  # dynamic graphs: the sizes are ours to pick, keep them cheap
DYNAMIC_SIZE_CAP = 2048      # dynamic graphs: first evaluation's sequence sizes are capped here
DYNAMIC_OTHER_CAP = 4        # ... and its other sizes (batch) here
SENTINEL = 1 << 31           # larger integer literals are "until the end" sentinels, not windows
MASKED_BIAS = -1e4           # an additive mask's masked entries: at most this (see 1. above)

_SCALAR_TYPES = (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool)


class NotProven(Exception):
    """The mask could not be proven causal; the message says why."""


def prove_causal(mask: Node, q_len, kv_len=None) -> str | None:
    """None when mask is the causal lower triangle for q_len queries over kv_len keys (aligned
    to the lower right; kv_len None: q_len), else the reason."""
    try:
        _prove(mask, q_len, q_len if kv_len is None else kv_len)
    except NotProven as e:
        return str(e)
    return None


def _is_scalar_leaf(value) -> bool:
    if isinstance(value, _SCALAR_TYPES):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(x, _SCALAR_TYPES) for x in value)


def _subgraph(mask: Node) -> tuple[set[Node], set[Node]]:
    """(tensor nodes computing the mask, scalar leaves): raises NotProven on data dependence."""
    nodes, leaves, todo = set(), set(), [mask]
    while todo:
        n = todo.pop()
        if n in nodes or n in leaves:
            continue
        value = meta_value(n)
        if n is not mask and _is_scalar_leaf(value):
            leaves.add(n)
            continue
        if n.op == "placeholder":
            raise NotProven(f"the mask depends on the data of input '{n.name}' "
                            "(an attention/padding mask or another runtime tensor)")
        if n.op in ("get_attr", "call_module"):
            raise NotProven(f"the mask depends on module state '{n.target}'")
        nodes.add(n)
        todo.extend(n.all_input_nodes)
    for n in nodes:
        for user in n.users:
            if user not in nodes and may_mutate(user):
                raise NotProven(f"the mask's subgraph is modified in place by '{user.name}'")
    return nodes, leaves


def _flat_ints(x, out: list[int]) -> None:
    if isinstance(x, bool):
        return
    if isinstance(x, int):
        out.append(abs(x))
    elif isinstance(x, (tuple, list)):
        for y in x:
            _flat_ints(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _flat_ints(y, out)
    elif isinstance(x, slice):
        _flat_ints((x.start, x.stop, x.step), out)


def _largest_constant(nodes: set[Node]) -> int:
    found: list[int] = []
    for n in nodes:
        _flat_ints((n.args, n.kwargs), found)
    return max([c for c in found if c < SENTINEL], default=0)


def _free_symbols(x) -> set:
    if isinstance(x, (tuple, list, torch.Size)):
        return set().union(*(_free_symbols(y) for y in x)) if x else set()
    node = getattr(x, "node", None)  # SymInt, SymFloat, SymBool; plain numbers have none
    return set(getattr(getattr(node, "expr", None), "free_symbols", ()))


def _shape_env(values):
    for v in values:
        for x in (v if isinstance(v, (tuple, list, torch.Size)) else (v,)):
            node = getattr(x, "node", None)
            if getattr(node, "shape_env", None) is not None:
                return node.shape_env
    return None


def _evaluate(x, point: dict):
    """A size (int, SymInt, SymBool, SymFloat or a tuple of them) at concrete symbol values."""
    if isinstance(x, (tuple, list, torch.Size)):
        values = [_evaluate(y, point) for y in x]
        return torch.Size(values) if isinstance(x, torch.Size) else type(x)(values)
    if isinstance(x, (bool, int, float)):
        return x
    expr = sympy.sympify(sympy.sympify(x.node.expr).xreplace(point))
    if expr.free_symbols:
        raise NotProven(f"the mask depends on a data-dependent value ({x.node.expr})")
    if isinstance(x, torch.SymBool):
        return bool(expr)
    return int(expr) if isinstance(x, torch.SymInt) else float(expr)


def _points(mask_value: torch.Tensor, leaves: set[Node], nodes: set[Node]) -> list[dict]:
    """Symbol values at which to evaluate: [{}] for a static graph, two sizes for a dynamic one."""
    values = [meta_value(n) for n in leaves]
    for n, v in zip(leaves, values):
        if isinstance(v, torch.SymFloat) and _free_symbols(v):
            raise NotProven(f"the mask depends on a runtime float ('{n.name}')")
    symbols = set().union(*(_free_symbols(v) for v in values)) if values else set()
    if not symbols:
        return [{}]
    env = _shape_env(values)
    hints = getattr(env, "backed_var_to_val", None) or getattr(env, "var_to_val", {})
    if any(s not in hints for s in symbols):
        raise NotProven("the mask depends on a data-dependent size (an unbacked symbol)")
    seq = _free_symbols(tuple(mask_value.shape[-2:])) & symbols
    first = {s: min(int(hints[s]), DYNAMIC_SIZE_CAP if s in seq else DYNAMIC_OTHER_CAP)
             for s in symbols}
    if not seq:
        return [first]
    c = _largest_constant(nodes)
    larger = dict(first)
    for s in seq:
        larger[s] = max(2 * first[s] + 1, 2 * c + 2)
    return [first, larger]


def _extract(mask: Node, nodes: set[Node], leaves: set[Node]) -> tuple[GraphModule, list[Node]]:
    """A standalone GraphModule computing the mask from its scalar leaves."""
    g, env = Graph(), {}
    order = list(mask.graph.nodes)
    leaf_list = [n for n in order if n in leaves]
    for n in leaf_list:
        env[n] = g.placeholder(n.name)
    for n in order:
        if n in nodes:
            env[n] = g.node_copy(n, lambda x: env[x])
    g.output(env[mask])
    return GraphModule(torch.nn.Module(), g), leaf_list


def _lower_triangle(m, n: int, s: int) -> bool:
    """m broadcasts as [..., n, s] and is the causal lower triangle aligned to the lower right
    (query i sees keys 0 .. s - n + i; checked in row blocks): boolean, or additive (0 on the
    triangle, at most MASKED_BIAS off it)."""
    if not isinstance(m, torch.Tensor) or m.dim() < 2:
        return False
    if m.dtype != torch.bool and not m.dtype.is_floating_point:
        return False
    if m.shape[-2] != n or m.shape[-1] != s:
        return False
    cols = torch.arange(s, device=m.device)
    step = max(1, (1 << 24) // max(s, 1))
    for r0 in range(0, n, step):
        rows = torch.arange(r0, min(n, r0 + step), device=m.device) + (s - n)
        block = m[..., r0:r0 + len(rows), :]
        want = (cols[None, :] <= rows[:, None]).expand(block.shape)
        if block.dtype != torch.bool:  # additive: 0 where seen, far below 0 where masked
            if not bool((block <= MASKED_BIAS).logical_or_(want).all()):
                return False
            block = block == 0
        if not torch.equal(block, want):
            return False
    return True


def _prove(mask: Node, q_len, kv_len) -> None:
    value = tensor_value(mask)
    if value is None:
        raise NotProven("the mask has no traced tensor value")
    if value.dtype != torch.bool and not value.dtype.is_floating_point:
        raise NotProven(f"the mask has dtype {value.dtype}, neither boolean nor additive")
    nodes, leaves = _subgraph(mask)
    points = _points(value, leaves, nodes)
    gm, leaf_list = _extract(mask, nodes, leaves)
    limit = MAX_MASK_ELEMENTS if points == [{}] else MAX_DYNAMIC_MASK_ELEMENTS
    for point in points:
        shape = _evaluate(tuple(value.shape), point)
        size = math.prod(shape)
        if size > limit:
            raise NotProven(f"the mask is too large to verify ({list(shape)})")
        n, s = _evaluate(q_len, point), _evaluate(kv_len, point)
        args = [_evaluate(meta_value(leaf), point) for leaf in leaf_list]
        try:
            with unset_fake_temporarily(), torch.no_grad():
                result = gm(*args)
        except Exception as e:  # noqa: BLE001 - any failure means "not proven"
            raise NotProven(f"the mask could not be evaluated at size {n}: "
                            f"{type(e).__name__}: {e}") from e
        if not _lower_triangle(result, n, s):
            size = f"{n}" if n == s else f"{n} x {s} (lower right)"
            if value.dtype != torch.bool:
                raise NotProven(f"the mask is a {value.dtype} additive bias, not 0 on the "
                                f"causal lower triangle and <= {MASKED_BIAS:g} off it at size "
                                f"{size}")
            raise NotProven(f"the mask is not the causal lower triangle at size {size} "
                            "(sliding window, chunked, padded or non-causal)")
