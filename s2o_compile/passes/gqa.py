"""Undo HF's repeat_kv in a graph, so that the S2O op reads the un-repeated K/V (native GQA).

repeat_kv(x, n_rep) = x[:, :, None].expand(B, Hkv, n_rep, N, D).reshape(B, Hkv * n_rep, N, D),
which equals x.repeat_interleave(n_rep, dim=1): query head h reads kv head h // n_rep, exactly the
op's GQA rule. The chain is recognised in Dynamo form (getitem/unsqueeze, expand, reshape/view)
and in ATen form (unsqueeze, expand, [clone,] reshape/view/_unsafe_view). Each step is verified by
its shapes, which is enough: inserting a size-1 dim, broadcasting it, and merging it into the head
dim are all order-preserving, so matching shapes imply matching values.
"""
from __future__ import annotations

import operator

import torch
from torch.fx import Node

from ._fx import same_shape, same_size, tensor_value

aten = torch.ops.aten

_RESHAPE_METHODS = ("reshape", "view")
_RESHAPE_FUNCTIONS = (torch.reshape, aten.reshape.default, aten.view.default,
                      aten._unsafe_view.default)
_COPY_METHODS = ("contiguous", "clone")
_COPY_FUNCTIONS = (aten.clone.default, torch.clone)
_EXPAND_METHODS = ("expand",)
_EXPAND_FUNCTIONS = (aten.expand.default, torch.Tensor.expand)
_UNSQUEEZE_METHODS = ("unsqueeze",)
_UNSQUEEZE_FUNCTIONS = (torch.unsqueeze, aten.unsqueeze.default)


def _is(node, methods, functions) -> bool:
    if not isinstance(node, Node):
        return False
    if node.op == "call_method":
        return node.target in methods
    return node.op == "call_function" and node.target in functions


def _is_noop_slice(node: Node) -> bool:
    """aten.slice(x, dim, 0, INT64_MAX): torch.export writes these for full slices like x[:, :]."""
    if node.op != "call_function" or node.target is not aten.slice.Tensor:
        return False
    start, end, step = (list(node.args[2:]) + [None, None, None])[:3]
    a, b = tensor_value(node.args[0]), tensor_value(node)
    return (start in (None, 0) and (end is None or isinstance(end, int) and end >= 2 ** 62)
            and step in (None, 1) and a is not None and b is not None
            and same_shape(a.shape, b.shape))


def _source(node: Node):
    """The tensor a one-input step reads (its first argument), past no-op slices."""
    src = node.args[0] if node.args and isinstance(node.args[0], Node) else None
    while isinstance(src, Node) and _is_noop_slice(src):
        src = src.args[0]
    return src


def _is_pure_index(node: Node) -> bool:
    """x[:, :, None] and the like: only full slices, Ellipsis and None (an unsqueeze)."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return False
    idx = node.args[1]
    idx = idx if isinstance(idx, tuple) else (idx,)
    full = slice(None, None, None)
    return (sum(i is None for i in idx) == 1
            and all(i is None or i is Ellipsis or i == full for i in idx))


def unwrap_repeat_kv(node: Node) -> tuple[Node, int] | None:
    """(x, n_rep) when node is repeat_kv(x, n_rep) with x [B, Hkv, N, D]; None otherwise."""
    out = tensor_value(node)
    if out is None or out.dim() != 4 or not _is(node, _RESHAPE_METHODS, _RESHAPE_FUNCTIONS):
        return None
    expanded = _source(node)
    if _is(expanded, _COPY_METHODS, _COPY_FUNCTIONS):
        expanded = _source(expanded)
    if not _is(expanded, _EXPAND_METHODS, _EXPAND_FUNCTIONS):
        return None
    unsqueezed = _source(expanded)
    if not (_is(unsqueezed, _UNSQUEEZE_METHODS, _UNSQUEEZE_FUNCTIONS)
            or isinstance(unsqueezed, Node) and _is_pure_index(unsqueezed)):
        return None
    base = _source(unsqueezed)
    e, u, x = tensor_value(expanded), tensor_value(unsqueezed), tensor_value(base)
    if e is None or u is None or x is None or x.dim() != 4 or e.dim() != 5:
        return None
    B, Hkv, N, D = x.shape
    n_rep = e.shape[2]
    if not isinstance(n_rep, int) or not isinstance(Hkv, int):
        return None
    if not (same_shape(u.shape, (B, Hkv, 1, N, D))
            and same_shape(e.shape, (B, Hkv, n_rep, N, D))
            and same_shape(out.shape, (B, Hkv * n_rep, N, D))):
        return None
    return base, n_rep


def unwrap_pair(k: Node, v: Node):
    """Un-repeated (k, v) when both are repeat_kv of the same factor, else the originals."""
    rk, rv = unwrap_repeat_kv(k), unwrap_repeat_kv(v)
    if rk is None or rv is None or rk[1] != rv[1]:
        return k, v, 1
    kb, vb = tensor_value(rk[0]), tensor_value(rv[0])
    if not same_size(kb.shape[1], vb.shape[1]):
        return k, v, 1
    return rk[0], rv[0], rk[1]
