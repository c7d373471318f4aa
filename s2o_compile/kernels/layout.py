"""Where every key of a segment goes: the dense ranges and the ranked prefix.

For segment g (queries [s0, s1), s0 = g * segment_size):
  sink   = keys [0, sink_end)           sink_end = min(sink_tokens, s0)
  local  = keys [lo, s0)                lo = max(s0 - local_window, sink_end)
  own    = keys [s0, i] for query i     (causal by original position)
  prefix = keys [sink_end, lo)          ranked, walked tile by tile with early stopping.
Sink, local and own keys form the dense pass (pass 1); the prefix is the sparse pass (pass 2).

The index table of all segments is one flat int32 tensor [B, R, total], R = Hkv (one ranking per
kv head, shared by its GQA group) or Hq (rank_per_head): segment g's ranked prefix occupies
[offsets[g], offsets[g + 1]) and holds absolute key positions. Its size is
sum_g prefix_len(g) ~ N^2 / (2 * segment_size) entries per row, which stays below the layer's
own K+V (4 * N * D bytes per kv head in 16-bit) while N <= 2 * D * segment_size with R = Hkv
(rank_per_head multiplies it by the group size).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    sink_end: int
    lo: int

    @property
    def prefix_len(self) -> int:
        return self.lo - self.sink_end


def num_segments(n: int, segment_size: int) -> int:
    return (n + segment_size - 1) // segment_size


def segments(n: int, segment_size: int, sink_tokens: int, local_window: int) -> list[Segment]:
    out = []
    for g in range(num_segments(n, segment_size)):
        s0 = g * segment_size
        sink_end = min(sink_tokens, s0)
        lo = max(s0 - local_window, sink_end)
        out.append(Segment(s0, min(s0 + segment_size, n), sink_end, lo))
    return out


def prefix_lengths(n: int, segment_size: int, sink_tokens: int, local_window: int,
                   device=None) -> torch.Tensor:
    """prefix_len(g) for every segment as an int64 tensor (built with device ops, no host sync)."""
    g = torch.arange(num_segments(n, segment_size), device=device, dtype=torch.int64)
    s0 = g * segment_size
    sink_end = torch.clamp(s0, max=sink_tokens)
    lo = torch.maximum(s0 - local_window, sink_end)
    return lo - sink_end


def table_offsets(n: int, segment_size: int, sink_tokens: int, local_window: int,
                  device=None) -> torch.Tensor:
    """Start of each segment's ranked prefix in the flat index table: int64 [G + 1]."""
    lens = prefix_lengths(n, segment_size, sink_tokens, local_window, device)
    return torch.nn.functional.pad(torch.cumsum(lens, 0), (1, 0))


def first_ranked_segment(segment_size: int, sink_tokens: int, local_window: int) -> int:
    """The first segment with a non-empty ranked prefix (prefix_len(g) = g * S - sink - window)."""
    return (sink_tokens + local_window) // segment_size + 1


def table_size(n: int, segment_size: int, sink_tokens: int, local_window: int) -> int:
    """Entries of the flat index table per (batch, kv head), from shapes alone (closed form of
    sum_g prefix_len(g), prefix_len(g) = max(0, g * S - (local_window + sink_tokens)))."""
    G = num_segments(n, segment_size)
    c = local_window + sink_tokens
    g0 = first_ranked_segment(segment_size, sink_tokens, local_window)
    cnt = max(0, G - g0)
    return segment_size * (g0 + G - 1) * cnt // 2 - c * cnt


def heads_per_tile(group: int, block_m: int, pack_gqa: bool) -> int:
    """Query heads of one GQA group that share a query tile (and its walk through the kv head's
    table): the largest power of two dividing the group that leaves at least 16 positions in a
    block_m-row tile; 1 without packing. A tile is block_m // h positions x h heads."""
    h = 1
    while pack_gqa and group % (2 * h) == 0 and block_m // (2 * h) >= 16:
        h *= 2
    return h


def table_heads(q_heads: int, kv_heads: int, rank_per_head: bool) -> int:
    """Rows R of the index table per batch: one per query head with rank_per_head, else one per
    kv head."""
    return q_heads if rank_per_head else kv_heads
