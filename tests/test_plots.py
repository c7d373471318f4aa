"""benchmarks/plots.py: the pooling behind the heat maps, and each figure from real inputs.

matplotlib is the `bench` extra: without it these tests skip.
"""
import json
import math
import pathlib
import sys

import pytest
import torch

pytest.importorskip("matplotlib")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def assert_small_png(path):
    data = pathlib.Path(path).read_bytes()
    assert data.startswith(PNG) and 5_000 < len(data) < 200_000, len(data)


def test_pool_max_keeps_the_largest_value_of_each_bin():
    x = torch.zeros(6, 9)
    x[1, 7] = 5.0   # bin (0, 2) with 3 x 3 bins
    x[5, 0] = 2.0   # bin (1, 0)
    m = plots.pool_max(x, 2, 3)
    assert m.shape == (2, 3)
    assert torch.equal(m, torch.tensor([[0.0, 0.0, 5.0], [2.0, 0.0, 0.0]]))
    assert plots.pool_max(torch.ones(5, 7), 2, 3).shape == (2, 3)  # ragged edges padded


def test_full_map_equals_pooled_dense_attention():
    """Row chunks must not change the picture: compare with softmax over the full matrix."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 200, 16, generator=g), torch.randn(1, 2, 200, 16, generator=g)
    s = (q[0, 3] @ k[0, 1].T) * 0.25
    s = s.masked_fill(torch.ones(200, 200, dtype=torch.bool).triu(1), -math.inf)
    expected = plots.pool_max(torch.softmax(s, -1), 50, 50)
    got = plots.full_map(q, k, head=3, scale=0.25, bins=50, chunk=28)
    torch.testing.assert_close(got, expected)


def test_results_figures_from_the_committed_h100_json(tmp_path):
    files = sorted(str(p) for p in (ROOT / "benchmarks" / "results").glob("h100_*.json"))
    assert files
    out = plots.main(["results", *files, "--out-dir", str(tmp_path), "--prefix", "t_"])
    assert [pathlib.Path(p).name for p in out] == ["t_tau.png", "t_speedup.png"]
    for p in out:
        assert_small_png(p)
    labels = {r["label"] for r in plots.load_rows(files)}
    assert {"gain/tiers", "remaining/tiers", "remaining/sort"} <= labels
    from s2o_compile.config import ORDERINGS, STOP_RULES
    assert all(rule in STOP_RULES and order in ORDERINGS
               for rule, order in (label.split("/") for label in labels)), labels


def test_claims_figure(tmp_path):
    rows = [dict(method=m, tau=t, density=d, mse=e) for m, f in (("s2o", 1), ("block", 10))
            for t, d, e in ((0.01, 0.8, 1e-6 * f), (0.1, 0.4, 1e-4 * f))]
    src = tmp_path / "c.json"
    src.write_text(json.dumps(dict(meta=dict(device="cpu", kernel="reference"),
                                   runs=[dict(N=4096, rows=rows, comparisons=[])])))
    assert_small_png(plots.main(["claims", str(src), "--out", str(tmp_path / "c.png")]))


def test_claims_rejects_a_bench_file(tmp_path):
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(dict(meta={}, rows=[])))
    with pytest.raises(SystemExit, match="not a paper_claims.py results file"):
        plots.main(["claims", str(src)])


def test_heatmap_small(tmp_path):
    out = plots.main(["heatmap", "--seq-len", "2048", "--out", str(tmp_path / "h.png")])
    assert_small_png(out)
