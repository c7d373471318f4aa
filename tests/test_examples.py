"""Every script in examples/ runs as a user would run it (a subprocess) and says what it should."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("transformers")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_example(name: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m[1])


def test_compile_hf_llama():
    out = run_example("compile_hf_llama.py")
    assert "2 of 2 SDPA call(s) rewritten" in out
    assert number(r"logits rel\. error vs dense ([\d.e+-]+)", out) < 1e-3


def test_inductor_pipeline():
    out = run_example("inductor_pipeline.py")
    assert "2 of 2 SDPA call(s) rewritten" in out
    assert "pre_grad_custom_pass restored: True" in out
    assert number(r"max \|logits - eager\| = ([\d.e+-]+)", out) < 1e-4


def test_inspect_graphs():
    out = run_example("inspect_graphs.py")
    assert "1 graph(s), 2 SDPA call(s), 2 rewritten" in out
    assert "1 graph(s), 2 SDPA call(s), 0 rewritten" in out
    before, after = out.split("== code after the rewrite")[0], out.split("== code after")[1]
    assert "scaled_dot_product_attention(" in before.split("== code before")[1]
    assert "torch.ops.s2o.sparse_attention" in after.split("== 2.")[0]
    assert out.count("decision=skipped check=causal") == 2
    assert "[log] s2o_compile INFO: s2o: rewrote" in out
    assert "[log] s2o_compile INFO: s2o: kept" in out


def test_sparse_attention_op():
    out = run_example("sparse_attention_op.py")
    rows = re.findall(r"threshold=(\S+)\s+density=([\d.]+) rel\.err=([\d.e+-]+)", out)
    assert [float(t) for t, _, _ in rows] == [0.0, 1e-3, 1e-2, 0.1]
    density = [float(d) for _, d, _ in rows]
    err = [float(e) for _, _, e in rows]
    assert density[0] == 1.0 and err[0] < 1e-4          # threshold 0 is dense attention
    assert density == sorted(density, reverse=True) and density[-1] < 0.95
    assert err == sorted(err)
    assert "density 1.0 (dense SDPA)" in out
    (d, e), = re.findall(r"chunk of the last \d+ queries: density=([\d.]+) rel\.err=([\d.e+-]+)", out)
    assert float(d) < 0.95 and float(e) < 0.05  # sparse, and the whole prefill's rows
