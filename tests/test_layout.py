"""Query-tile packing of GQA heads (layout.heads_per_tile)."""
import pytest

from s2o_compile.kernels.layout import heads_per_tile


@pytest.mark.parametrize("group, block_m, pack, expected", [
    (4, 64, True, 4), (4, 32, True, 2), (8, 128, True, 8), (8, 64, True, 4), (1, 64, True, 1),
    (7, 128, True, 1), (6, 128, True, 2), (4, 16, True, 1), (4, 64, False, 1)])
def test_heads_per_tile(group, block_m, pack, expected):
    assert heads_per_tile(group, block_m, pack) == expected
