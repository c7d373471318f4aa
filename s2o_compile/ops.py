"""The S2O operator, registered with torch.library.

torch.ops.s2o.sparse_attention(q, k, v, scale, *config fields) -> (out, density)
  A triton_op: torch.compile sees its body, so Inductor schedules the Triton kernels it launches
  through wrap_triton. CUDA tensors take the Triton kernels (on Hopper with Triton 3.6 the walk
  runs the Gluon pair kernel instead, an opaque op while traced: kernels/walk.py); CPU tensors take
  torch.ops.s2o.sparse_attention_eager, an opaque custom op around the PyTorch reference (its
  Python loops and early exit must not be traced). With symbolic shapes (dynamic=True) CUDA
  tensors take that opaque op too, which launches the same Triton kernels eagerly: Inductor's
  scheduler failed (KeyError) on the traced kernels over a symbolic length (H100, torch 2.11).
  Sequences shorter than min_seq_len (kv_len) and short chunks run dense SDPA (runs_dense).
  The output is always contiguous [B, Hq, L, D]; density is float32 [B, Hq].

q [B, Hq, L, D] with k, v [B, Hkv, N, D], L <= N: L = N is a whole prefill; L < N a chunked
prefill, whose queries are the last L positions (causal aligned to the lower right, as
FlashAttention's causal and torch.nn.attention.bias.causal_lower_right; SDPA's is_causal=True
aligns to the upper left instead, and attention.sparse_attention spells out which one).

The config travels as the S2OConfig fields in declaration order (config_args / S2OConfig(*args)).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.library import triton_op
from torch.nn.attention.bias import causal_lower_right

from .config import S2OConfig
from .kernels import triton_s2o, walk
from .kernels.layout import causal_pairs
from .kernels.reference import s2o_attention_reference
from .validation import check_attention_inputs


# A chunk (q_len < kv_len) of fewer than min(MIN_CHUNK_QUERIES, segment_size) queries runs
# dense: its ranking costs a whole prefix's scores and sort for few queries (0.4-0.9 ms, mostly
# launches). At 512 queries S2O still led the lower-right FLASH kernel: 0.84 vs 0.94 ms at 32K
# keys, 0.87 vs 3.7 ms at 128K (H200, BENCHMARKS.md session 10); a decode step (1 query) is far
# below, and stays dense whatever the config.
MIN_CHUNK_QUERIES = 512


def min_chunk_queries(cfg: S2OConfig) -> int:
    """The fewest queries of a chunk that S2O runs (fewer run dense SDPA)."""
    return min(MIN_CHUNK_QUERIES, cfg.segment_size)


def runs_dense(q_len: int, kv_len: int, cfg: S2OConfig) -> bool:
    """Whether the op runs dense SDPA for these lengths: fewer than min_seq_len keys, or a
    chunk of fewer than min_chunk_queries(cfg) queries."""
    if kv_len < cfg.min_seq_len:
        return True
    return q_len < kv_len and q_len < min_chunk_queries(cfg)


def config_args(cfg: S2OConfig) -> tuple:
    """S2OConfig -> the op's trailing arguments (the dataclass fields, in order)."""
    return tuple(getattr(cfg, f.name) for f in dataclasses.fields(cfg))


def _static(x):
    if isinstance(x, torch.SymInt):
        return int(x)
    if isinstance(x, torch.SymFloat):
        return float(x)
    return x


def dense_attention(q, k, v, scale, contiguous: bool = True, stats: bool = True):
    """Causal SDPA and a density of ones: what S2O runs below min_seq_len. contiguous=False
    keeps SDPA's own output layout (the Python front end; the op promises a contiguous one);
    stats=False returns the output alone. q shorter than k: the last positions (lower right)."""
    gqa = bool(q.shape[1] != k.shape[1])
    if q.shape[2] == k.shape[2]:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    elif triton_s2o.tracing():  # no CausalBias over FakeTensors: the mask, materialized
        L, N = q.shape[2], k.shape[2]
        mask = (torch.arange(N, device=q.device)[None, :]
                <= torch.arange(N - L, N, device=q.device)[:, None])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                             enable_gqa=gqa)
    else:  # the lower-right causal mask unmaterialized, for the FLASH / EFFICIENT kernels
        if gqa:  # CausalBias takes no enable_gqa
            k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=scale,
                                             attn_mask=causal_lower_right(q.shape[2], k.shape[2]))
    if not stats:
        return out
    density = torch.ones(q.shape[0], q.shape[1], dtype=torch.float32, device=q.device)
    return (out.contiguous() if contiguous else out), density


# The op signatures spell out the S2OConfig fields (schema inference needs annotations).
@torch.library.custom_op("s2o::sparse_attention_eager", mutates_args=())
def sparse_attention_eager(
    q: Tensor, k: Tensor, v: Tensor, scale: float, threshold: float, segment_size: int,
    block_m: int, block_n: int, sink_tokens: int, local_window: int, ordering: str,
    num_tiers: int, tier_width: float, pooling: str, min_seq_len: int, stop_rule: str,
    pack_gqa: bool, pool_rows: int, rank_per_head: bool, walk_chunk: int,
) -> tuple[Tensor, Tensor]:
    cfg = S2OConfig(threshold, segment_size, block_m, block_n, sink_tokens, local_window,
                    ordering, num_tiers, tier_width, pooling, min_seq_len, stop_rule, pack_gqa,
                    pool_rows, rank_per_head, walk_chunk)
    if q.device.type == "cuda":
        return walk.s2o_attention(q, k, v, scale, cfg)
    out, _, pairs = s2o_attention_reference(q, k, v, scale, cfg)
    return out, (pairs.double() / causal_pairs(q.shape[2], k.shape[2])).float()


@sparse_attention_eager.register_fake
def _(q, k, v, scale, *cfg_args):
    B, Hq, N, D = q.shape
    return q.new_empty(B, Hq, N, D), q.new_empty(B, Hq, dtype=torch.float32)


@triton_op("s2o::sparse_attention", mutates_args=())
def sparse_attention_op(
    q: Tensor, k: Tensor, v: Tensor, scale: float, threshold: float, segment_size: int,
    block_m: int, block_n: int, sink_tokens: int, local_window: int, ordering: str,
    num_tiers: int, tier_width: float, pooling: str, min_seq_len: int, stop_rule: str,
    pack_gqa: bool, pool_rows: int, rank_per_head: bool, walk_chunk: int,
) -> tuple[Tensor, Tensor]:
    check_attention_inputs(q, k, v)
    # Under dynamic=True Dynamo may trace config ints as symbols: they are constants, specialize.
    cfg_args = tuple(_static(a) for a in (threshold, segment_size, block_m, block_n, sink_tokens,
                                          local_window, ordering, num_tiers, tier_width, pooling,
                                          min_seq_len, stop_rule, pack_gqa, pool_rows,
                                          rank_per_head, walk_chunk))
    cfg = S2OConfig(*cfg_args)
    if runs_dense(q.shape[2], k.shape[2], cfg):
        return dense_attention(q, k, v, scale)
    symbolic = any(isinstance(d, torch.SymInt) for d in (*q.shape, *k.shape))
    if q.device.type == "cuda" and not symbolic:
        return walk.s2o_attention(q, k, v, scale, cfg)
    return torch.ops.s2o.sparse_attention_eager(q, k, v, scale, *cfg_args)


def _no_backward(ctx, *grads):
    raise RuntimeError("s2o.sparse_attention is inference-only (prefill): it has no backward. "
                       "The graph pass never rewrites SDPA calls whose inputs require grad.")


def _setup_context(ctx, inputs, output):
    pass


sparse_attention_op.register_autograd(_no_backward, setup_context=_setup_context)
sparse_attention_eager.register_autograd(_no_backward, setup_context=_setup_context)
