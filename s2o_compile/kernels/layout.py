"""Where every key of a segment goes: the dense ranges and the ranked prefix.

For segment g (queries [s0, s1), s0 = g * segment_size):
  sink   = keys [0, sink_end)           sink_end = min(sink_tokens, s0)
  local  = keys [lo, s0)                lo = max(s0 - local_window, sink_end)
  own    = keys [s0, i] for query i     (causal by original position)
  prefix = keys [sink_end, lo)          ranked, walked tile by tile with early stopping.
Sink, local and own keys form the dense pass (pass 1); the prefix is the sparse pass (pass 2).

Chunked prefill (q_start > 0): the queries are the last n - q_start positions of the n keys. The
segments stay where a whole prefill puts them (multiples of segment_size); those before the
first query's have no queries, and their prefix is empty (length 0 in the table), so every
kernel indexes the offsets by the segment's absolute number. The first segment with queries
may start inside: its queries are [q_start, s1), its own keys still [s0, i].

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
    start: int  # first query position (s0, or q_start inside the first segment of a chunk)
    end: int
    sink_end: int
    lo: int
    index: int  # g: the segment's number, which indexes the table offsets

    @property
    def prefix_len(self) -> int:
        return self.lo - self.sink_end


def num_segments(n: int, segment_size: int) -> int:
    return (n + segment_size - 1) // segment_size


def segments(n: int, segment_size: int, sink_tokens: int, local_window: int,
             q_start: int = 0) -> list[Segment]:
    """The segments that hold queries (positions [q_start, n)), in order."""
    out = []
    for g in range(q_start // segment_size, num_segments(n, segment_size)):
        s0 = g * segment_size
        sink_end = min(sink_tokens, s0)
        lo = max(s0 - local_window, sink_end)
        out.append(Segment(max(s0, q_start), min(s0 + segment_size, n), sink_end, lo, g))
    return out


def prefix_lengths(n: int, segment_size: int, sink_tokens: int, local_window: int,
                   device=None, q_start: int = 0) -> torch.Tensor:
    """prefix_len(g) for every segment as an int64 tensor (built with device ops, no host sync);
    0 for the segments before the one holding q_start (no queries)."""
    g = torch.arange(num_segments(n, segment_size), device=device, dtype=torch.int64)
    s0 = g * segment_size
    sink_end = torch.clamp(s0, max=sink_tokens)
    lo = torch.maximum(s0 - local_window, sink_end)
    return torch.where(g >= q_start // segment_size, lo - sink_end, 0)


def table_offsets(n: int, segment_size: int, sink_tokens: int, local_window: int,
                  device=None, q_start: int = 0) -> torch.Tensor:
    """Start of each segment's ranked prefix in the flat index table: int64 [G + 1]."""
    lens = prefix_lengths(n, segment_size, sink_tokens, local_window, device, q_start)
    return torch.nn.functional.pad(torch.cumsum(lens, 0), (1, 0))


def first_ranked_segment(segment_size: int, sink_tokens: int, local_window: int) -> int:
    """The first segment with a non-empty ranked prefix (prefix_len(g) = g * S - sink - window)."""
    return (sink_tokens + local_window) // segment_size + 1


def table_size(n: int, segment_size: int, sink_tokens: int, local_window: int,
               q_start: int = 0) -> int:
    """Entries of the flat index table per (batch, kv head), from shapes alone (closed form of
    sum_g prefix_len(g), prefix_len(g) = max(0, g * S - (local_window + sink_tokens)), over the
    segments from the one holding q_start)."""
    first = q_start // segment_size
    if first > 0:  # the segments before hold no queries: subtract what they would take
        return (table_size(n, segment_size, sink_tokens, local_window)
                - table_size(first * segment_size, segment_size, sink_tokens, local_window))
    G = num_segments(n, segment_size)
    c = local_window + sink_tokens
    g0 = first_ranked_segment(segment_size, sink_tokens, local_window)
    cnt = max(0, G - g0)
    return segment_size * (g0 + G - 1) * cnt // 2 - c * cnt


def causal_pairs(q_len: int, kv_len: int) -> int:
    """Causal QK pairs of q_len queries at the last positions of kv_len keys (the density's
    denominator: N(N+1)/2 for a whole prefill)."""
    q0 = kv_len - q_len
    return q_len * q0 + q_len * (q_len + 1) // 2


def query_tiles(q_len: int, kv_len: int, rows: int) -> int:
    """Query tiles of `rows` positions (aligned to multiples of rows) that hold the last q_len
    of kv_len positions: the length of `visited`'s last dimension, counted from the tile that
    holds the first query."""
    return -(-kv_len // rows) - (kv_len - q_len) // rows


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
