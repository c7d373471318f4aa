"""S2OConfig: every knob of the S2O operator, validated once at construction.

The defaults target Llama-class prefill at 32K-128K tokens (head dim 128, GQA); see README
"Configuration" for the reason behind each one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ORDERINGS = ("tiers", "sort")
STOP_RULES = ("gain", "remaining", "mean")
POOLINGS = ("mean", "max")


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class S2OConfig:
    """Parameters of S2O sparse attention (contract: shared/design/S2O.md).

    threshold:     tau, the error budget of the stop rule. The walk over the ranked prefix stops
                   after a key tile whose softmax-mass gain is below ``threshold * l`` for every
                   row of the query tile. 0 visits every key (= dense attention).
    segment_size:  queries per ranking segment; one ranked prefix per (batch, query head, segment),
                   or per (batch, kv head, segment) without rank_per_head.
    block_m:       query rows per tile; each query tile applies the stop rule on its own. With
                   pack_gqa, a tile holds block_m // h positions of h query heads of one GQA
                   group (layout.heads_per_tile), which share the walk and its K/V loads.
    block_n:       keys per tile, both in the dense pass and in the gathered walk: the stop rule
                   is tested after every block_n keys of the walk. The GPU kernel computes a
                   tile in steps of at most 64 keys (kernels.triton_s2o.sub_tile); 128 tests
                   the rule half as often as 64 for the same arithmetic.
    sink_tokens:   the first keys of the sequence, always attended densely (attention sink).
    local_window:  keys right before the segment, always attended densely (local band). The
                   segment's own keys are dense anyway; a wider window spends a dense pass on keys
                   the ranked walk would mostly skip (BENCHMARKS.md, session 6).
    ordering:      "sort" (by the gap to the segment's best estimate, quantized to 1/8 logit
                   over the top 15.6 logits: a stable counting sort of 7-bit keys) or "tiers" (num_tiers
                   tiers of tier_width logits, original order inside a tier: a counting sort,
                   cheaper but far less accurate at long N, see BENCHMARKS.md).
    num_tiers:     number of priority tiers for ordering="tiers".
    tier_width:    width of a tier in logits (nats) below the segment's best estimated score.
    pooling:       how a segment's queries are pooled for ranking: "mean" (one mean query per
                   segment and table row; the paper's with rank_per_head=False, a GQA group's
                   mean) or "max" (max over the scores of the mean query of every pool_rows
                   positions of every query head of the row).
    min_seq_len:   below this many keys (kv_len) the operator runs dense SDPA; so does a chunked
                   prefill of fewer than min(512, segment_size) queries (ops.runs_dense).
    stop_rule:     "gain" (the contract): stop when gain / l < tau on every row. "remaining":
                   stop when gain * (tiles left) / l < tau on every row, i.e. when the mass the
                   remaining tiles could add, if none exceeds the current one, is below tau.
                   "mean": the same bound averaged over the tile's rows instead of required
                   of every row (the relative error is an average too; a lone row that
                   still gains is no longer enough to keep the tile walking).
    pack_gqa:      put the query heads of a GQA group into one query tile (see block_m): the
                   gathered K/V tiles are loaded once for all of them; the tile stops when all
                   of its rows, over all its heads, meet the stop rule.
    pool_rows:     query positions per representative query for pooling="max" (at most one
                   segment).
    rank_per_head: one ranking (index table) per query head instead of one per kv head. With
                   GQA, the heads of a group often favour different keys: a shared ranking makes
                   each head walk past its neighbours' keys before reaching its own. Costs a
                   table group times larger at the same segment_size (and as many keys to
                   sort: hence the 2048-query default segments); excludes pack_gqa,
                   whose packed heads share one walk.
    walk_chunk:    keys of the ranked walk per stop decision. The stop rule is evaluated after
                   every block_n tile; the walk ends at the end of the walk_chunk-key chunk in
                   which it first held (the chunk's tiles are counted in the density). The GPU
                   kernel pipelines a chunk's gathered loads and decides once per chunk, so the
                   keys past the stop inside it cost no extra time and lower the error.
                   walk_chunk = block_n is the contract's exact stop (on the GPU, at a
                   pipeline refill per tile). 512 against 1024 at <= 2% error (H100): 3% slower
                   at 128K, 5-8% faster at 32K (BENCHMARKS.md session 8).
    """

    threshold: float = 0.1
    segment_size: int = 2048
    block_m: int = 64
    block_n: int = 128
    sink_tokens: int = 64
    local_window: int = 64
    ordering: str = "sort"
    num_tiers: int = 16
    tier_width: float = 1.0
    pooling: str = "max"
    min_seq_len: int = 16384
    stop_rule: str = "remaining"
    pack_gqa: bool = False
    pool_rows: int = 1024
    rank_per_head: bool = True
    walk_chunk: int = 512

    def __post_init__(self):
        def bad(field, value, allowed):
            raise ValueError(f"S2OConfig.{field}={value!r} is invalid: expected {allowed}")

        if not isinstance(self.threshold, (int, float)) or not (0.0 <= float(self.threshold) < 1.0):
            bad("threshold", self.threshold, "a float in [0, 1)")
        for name in ("block_m", "block_n"):
            v = getattr(self, name)
            if not isinstance(v, int) or not _is_pow2(v) or not 16 <= v <= 256:
                bad(name, v, "a power of two in [16, 256]")
        c = self.walk_chunk
        if (not isinstance(c, int) or isinstance(c, bool) or not _is_pow2(c)
                or not self.block_n <= c <= 2048):
            bad("walk_chunk", c, f"a power of two in [block_n={self.block_n}, 2048]")
        s = self.segment_size
        if not isinstance(s, int) or not _is_pow2(s) or s < self.block_m or s > 65536:
            bad("segment_size", s, f"a power of two in [block_m={self.block_m}, 65536]")
        for name in ("sink_tokens", "local_window", "min_seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(name, v, "an int >= 0")
        if self.ordering not in ORDERINGS:
            bad("ordering", self.ordering, f"one of {ORDERINGS}")
        if self.stop_rule not in STOP_RULES:
            bad("stop_rule", self.stop_rule, f"one of {STOP_RULES}")
        if self.pooling not in POOLINGS:
            bad("pooling", self.pooling, f"one of {POOLINGS}")
        if not isinstance(self.num_tiers, int) or not 1 <= self.num_tiers <= 64:
            bad("num_tiers", self.num_tiers, "an int in [1, 64]")
        for name in ("pack_gqa", "rank_per_head"):
            if not isinstance(getattr(self, name), bool):
                bad(name, getattr(self, name), "a bool")
        if self.pack_gqa and self.rank_per_head:
            bad("pack_gqa", True, "False when rank_per_head=True (packed heads share one walk, "
                "so they need one ranking per kv head)")
        p = self.pool_rows
        if not isinstance(p, int) or isinstance(p, bool) or not _is_pow2(p):
            bad("pool_rows", p, "a power of two")
        if not isinstance(self.tier_width, (int, float)) or not float(self.tier_width) > 0:
            bad("tier_width", self.tier_width, "a float > 0")

    def replace(self, **changes) -> "S2OConfig":
        return dataclasses.replace(self, **changes)
