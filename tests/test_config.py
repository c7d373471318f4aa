import pytest

from s2o_compile import S2OConfig


def test_defaults_are_valid_and_frozen():
    cfg = S2OConfig()
    assert cfg.threshold > 0 and cfg.segment_size % cfg.block_m == 0
    with pytest.raises(Exception):
        cfg.threshold = 0.5  # frozen


@pytest.mark.parametrize("field,value", [
    ("threshold", -0.1), ("threshold", 1.0), ("threshold", "x"),
    ("block_m", 48), ("block_n", 8), ("block_n", 512),
    ("segment_size", 100), ("segment_size", 16),  # not a power of two / below block_m
    ("sink_tokens", -1), ("local_window", -5), ("min_seq_len", 1.5),
    ("ordering", "random"), ("pooling", "median"), ("num_tiers", 0), ("tier_width", 0.0),
    ("walk_chunk", 64), ("walk_chunk", 384), ("walk_chunk", 4096), ("walk_chunk", True),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"S2OConfig.{field}="):
        S2OConfig(**{field: value})


def test_replace_validates():
    with pytest.raises(ValueError, match="block_n"):
        S2OConfig().replace(block_n=3)


def test_pack_gqa_needs_one_ranking_per_kv_head():
    with pytest.raises(ValueError, match="rank_per_head"):
        S2OConfig(pack_gqa=True, rank_per_head=True)
