"""Small FX helpers shared by the passes: node values, guard-free size comparison, locations.

Dynamo graphs keep a node's fake value in meta["example_value"], torch.export/ATen graphs in
meta["val"]; the passes read whichever is there. Sizes are compared on their sympy expressions:
asking ``SymInt == SymInt`` for a bool would install a guard after tracing, which a pass must not
do.
"""
from __future__ import annotations

import operator
import re

import torch
from torch.fx import Node

VALUE_KEYS = ("example_value", "val")


def value_key(node: Node) -> str | None:
    """The meta key that holds this node's fake value (None when it has none)."""
    for key in VALUE_KEYS:
        if key in node.meta:
            return key
    return None


def meta_value(node):
    """The traced (fake) value of a node, or a plain Python constant as is."""
    if not isinstance(node, Node):
        return node
    key = value_key(node)
    return node.meta[key] if key else None


def tensor_value(node) -> torch.Tensor | None:
    v = meta_value(node)
    return v if isinstance(v, torch.Tensor) else None


def size_expr(x):
    """An int, or the sympy expression of a SymInt (no guard is installed)."""
    if isinstance(x, torch.SymInt):
        return x.node.expr
    return x


def same_size(a, b) -> bool:
    """True when two sizes are provably equal without guarding: equal ints or equal expressions."""
    return size_expr(a) == size_expr(b)


def same_shape(a, b) -> bool:
    return len(a) == len(b) and all(same_size(x, y) for x, y in zip(a, b))


def static_int(x) -> int | None:
    """x as an int when it is a plain int or a SymInt with a constant expression."""
    e = size_expr(x)
    try:
        return int(e) if not isinstance(e, bool) and getattr(e, "is_number", True) else None
    except (TypeError, ValueError):
        return None


def hint(x) -> int | None:
    """The traced value of a size (no guard); None for a data-dependent (unbacked) one."""
    if isinstance(x, int):
        return x
    h = getattr(getattr(x, "node", None), "hint", None)
    return int(h) if h is not None else None


def layout_order(t: torch.Tensor) -> list[int] | None:
    """t's dims from outermost to innermost in memory (from stride hints; ties keep logical
    order). None when a stride is data-dependent."""
    strides = [hint(s) for s in t.stride()]
    if None in strides:
        return None
    return sorted(range(t.dim()), key=lambda d: -strides[d])


def shape_str(t) -> str:
    if not isinstance(t, torch.Tensor):
        return "?"
    return "[" + ",".join(str(size_expr(s)) for s in t.shape) + "]"


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def user_location(node: Node) -> str:
    """'module (file:line in function)': the innermost module of the node's nn_module_stack
    (e.g. model.layers.0.self_attn: HF models call SDPA from one shared file) and the innermost
    frame of its stack trace; either part left out where unknown ('?' if both are)."""
    trace = node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(trace)
    where = "{}:{} in {}".format(*frames[-1]) if frames else ""
    module = module_path(node)
    if module and where:
        return f"{module} ({where})"
    return module or where or "?"


def module_path(node: Node) -> str:
    """The qualified name of the innermost nn.Module the node was traced in ('' at the top),
    without Dynamo's L['self'] prefix."""
    stack = node.meta.get("nn_module_stack")
    try:  # (path, type) per module, innermost last; another layout names no module
        entry = list(stack.values())[-1]
    except (AttributeError, IndexError, TypeError):
        return ""
    if not isinstance(entry, (tuple, list)) or not entry:
        return ""
    return _LOCAL_PREFIX.sub("", str(entry[0]))


_LOCAL_PREFIX = re.compile(r"^L\[['\"][^'\"]*['\"]\](\[\d+\])*\.?")  # L['self'], L['fn'][0].


_INPLACE_OPERATORS = {operator.setitem, operator.iadd, operator.isub, operator.imul,
                      operator.itruediv, operator.ifloordiv, operator.imod, operator.ipow,
                      operator.iand, operator.ior, operator.ixor, operator.ilshift,
                      operator.irshift}


_INPLACE_DUNDERS = {f"__i{op}__" for op in ("add", "sub", "mul", "matmul", "truediv", "floordiv",
                                             "mod", "pow", "and", "or", "xor", "lshift", "rshift")}
_INPLACE_DUNDERS.add("__setitem__")


def _inplace_name(name: str) -> bool:
    """Tensor.add_, Tensor.__iadd__, Tensor.__setitem__ ... (not __init__ or __invert__)."""
    if name.startswith("__"):
        return name in _INPLACE_DUNDERS
    return name.endswith("_")


def may_mutate(node: Node) -> bool:
    """Whether a node may write into one of its inputs (in-place method, mutable op, out=, HOP).

    Conservative: anything that is not known to be functional counts as mutating.
    """
    if "out" in node.kwargs:
        return True
    if node.op == "call_method":
        return _inplace_name(node.target)
    if node.op != "call_function":
        return node.op == "call_module"
    t = node.target
    if t in _INPLACE_OPERATORS:
        return True
    if isinstance(t, torch._ops.OpOverload):
        return t._schema.is_mutable
    if isinstance(t, torch._ops.OpOverloadPacket):
        return any(getattr(t, o)._schema.is_mutable for o in t.overloads())
    if isinstance(t, torch._ops.HigherOrderOperator):
        return True
    return _inplace_name(getattr(t, "__name__", ""))
