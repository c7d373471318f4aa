"""explain(): per SDPA call location, shapes, decision and reason; graph code before and after."""
import logging

import pytest
import torch
import torch.nn.functional as F

from s2o_compile import S2OConfig, explain

CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                walk_chunk=32, sink_tokens=8,
                local_window=16, min_seq_len=0)


class TwoAttentions(torch.nn.Module):
    """A causal GQA call (rewritten) and a padded one (kept)."""

    def forward(self, q, k, v, attention_mask):
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        n = q.shape[2]
        i = torch.arange(n, device=q.device)
        mask = (i[None, :] <= i[:, None])[None, None] & attention_mask[:, None, None, :].bool()
        return a + F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, h, 70, 16, generator=g) for h in (4, 2, 2))
    attention_mask = torch.ones(2, 70)
    attention_mask[0, :3] = 0
    return q, k, v, attention_mask


def test_explain_reports_each_call_and_both_codes():
    e = explain(TwoAttentions(), *inputs(0), config=CFG)
    rewritten, kept = e.nodes
    assert (rewritten.decision, rewritten.check) == ("rewritten", None)
    assert (kept.decision, kept.check) == ("skipped", "causal")
    assert "attention/padding mask" in kept.reason
    for node in e.nodes:
        assert "test_explain.py:" in node.location and "in forward" in node.location
        assert "q[2,4,70,16] k[2,2,70,16] v[2,2,70,16]" in node.shapes
    assert e.code_before.count("scaled_dot_product_attention(") == 2
    assert e.code_after.count("scaled_dot_product_attention(") == 1
    assert "s2o.sparse_attention" in e.code_after and "s2o" not in e.code_before
    text = str(e)
    assert "1 graph(s), 2 SDPA call(s), 1 rewritten" in text
    assert "causal: explicit mask not proven causal" in text and "test_explain.py:" in text


def test_explain_runs_the_rewritten_graph_and_logs(caplog):
    model, args = TwoAttentions(), inputs(1)
    with caplog.at_level(logging.INFO, logger="s2o_compile"):
        e = explain(model, *args, config=CFG)
    assert e.num_rewritten == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "s2o_compile"]
    assert any(m.startswith("s2o: rewrote") for m in messages)
    assert any(m.startswith("s2o: kept") and "causal" in m for m in messages)


def test_explain_counts_graphs_across_breaks():
    def broken(q, k, v):
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch._dynamo.graph_break()
        return a + F.scaled_dot_product_attention(q[:, :, :1], k, v, enable_gqa=True).mean()

    q, k, v, _ = inputs(2)
    e = explain(broken, q, k, v, config=CFG)
    assert len(e.graphs) == 2
    assert [n.check for n in e.nodes] == [None, "seq_len"]


def test_explain_hf_llama_keyword_inputs():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      vocab_size=128, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    x = torch.randint(0, 128, (1, 50), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        e = explain(model, x, config=CFG, use_cache=False)
        padded = explain(model, x, config=CFG, attention_mask=torch.ones_like(x).index_fill_(
            1, torch.tensor([0]), 0))
    assert e.num_rewritten == 2 and len(e.nodes) == 2
    assert padded.num_rewritten == 0 and [n.check for n in padded.nodes] == ["causal", "causal"]


def test_explain_without_no_grad_keeps_calls_that_need_grad():
    q, k, v, m = inputs(4)
    q.requires_grad_(True)
    e = explain(TwoAttentions(), q, k, v, m, config=CFG)
    assert [n.check for n in e.nodes] == ["inference", "inference"]


def test_explain_says_why_a_model_without_sdpa_shows_no_call():
    def written_out(q, k, v):  # causal attention without SDPA: nothing for S2O to rewrite
        n = q.shape[2]
        s = (q @ k.transpose(-1, -2)).masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
        return s.softmax(-1) @ v

    q, k, v, _ = inputs(5)
    with torch.no_grad():
        e = explain(written_out, q, k[:, :1].expand_as(q), v[:, :1].expand_as(q), config=CFG)
    assert e.nodes == [] and 'attn_implementation="sdpa"' in str(e)
    assert "attn_implementation" not in str(explain(TwoAttentions(), *inputs(6), config=CFG))


class Stack(torch.nn.Module):
    """Two layers that call SDPA from one line, as HF models do from one shared file."""

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(32, 96)

        def forward(self, x):
            q, k, v = self.qkv(x).view(1, -1, 3, 2, 16).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return x + out.transpose(1, 2).reshape(1, -1, 32)

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([self.Layer(), self.Layer()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_locations_name_the_module_of_each_call():
    with torch.no_grad():
        e = explain(Stack(), torch.randn(1, 70, 32), config=CFG)
    locations = [n.location for n in e.nodes]
    assert [loc.split(" ")[0] for loc in locations] == ["layers.0", "layers.1"], locations
    assert all("test_explain.py" in loc and "in forward" in loc for loc in locations), locations


def test_a_short_call_that_is_not_causal_gives_its_own_reason():
    """At the default min_seq_len a short non-causal or grad-mode call is kept for what keeps it
    at any length, not for its length: lowering min_seq_len would not rewrite it."""
    q, k, v, _ = inputs(3)
    e = explain(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), q, k, v)
    assert [n.check for n in e.nodes] == ["causal"]
    e = explain(Stack(), torch.randn(1, 70, 32))  # grad mode: the weights require grad
    assert [n.check for n in e.nodes] == ["inference", "inference"]
    with torch.no_grad():
        e = explain(Stack(), torch.randn(1, 70, 32))
    assert [n.check for n in e.nodes] == ["min_seq_len", "min_seq_len"]
    assert "lower S2OConfig.min_seq_len" in e.nodes[0].reason


@pytest.mark.parametrize("stack", [None, {}, {"a": "not a pair"}, [1], {"a": ()}])
def test_unexpected_module_metadata_names_no_module(stack):
    """The location never fails the pass: metadata of another layout is left out."""
    from types import SimpleNamespace
    from s2o_compile.passes._fx import user_location
    node = SimpleNamespace(meta={"nn_module_stack": stack,
                                 "stack_trace": '  File "m.py", line 3, in forward\n'})
    assert user_location(node) == "m.py:3 in forward"
