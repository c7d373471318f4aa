"""HF transformers Llama, Mistral, Qwen2 and Falcon (small random-init configs) through the s2o
backend.

Two graph forms are tested. "native": whatever this transformers/torch pair traces (transformers
5.24 on torch 2.13 passes is_causal=True and enable_gqa=True). "explicit_mask": the mask is built
in the graph (arange / le / expand, bool [B, 1, N, N]), is_causal=False, and K/V go through
repeat_kv, which is what compiled transformers 5.17 does on torch 2.11; it is forced here by making
transformers' "can SDPA's is_causal replace the mask" test answer no.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers")
masking_utils = pytest.importorskip("transformers.masking_utils")

from s2o_compile import S2OConfig, S2OInductorPass, make_backend  # noqa: E402

CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                walk_chunk=32, sink_tokens=8,
                local_window=16, min_seq_len=0)
LAYERS = 2
VOCAB = 128


def build(kind, **overrides):
    """A 2-layer, 4-head (2 kv heads), head_dim 16 model with random weights, in eval mode."""
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[kind]
    config = config_cls(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB,
                        max_position_embeddings=512, attn_implementation="sdpa", **overrides)
    torch.manual_seed(0)
    return model_cls(config).eval()


def ids(n, batch=2, seed=0):
    return torch.randint(0, VOCAB, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=["native", "explicit_mask"])
def form(request, monkeypatch):
    if request.param == "explicit_mask":
        if not hasattr(masking_utils, "_ignore_causal_mask_sdpa"):
            pytest.skip("this transformers has no _ignore_causal_mask_sdpa")
        monkeypatch.setattr(masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
    return request.param


def all_nodes(reports):
    return [n for r in reports for n in r.nodes]


def assert_every_layer_rewritten(report):
    assert report.num_rewritten == LAYERS and len(report.nodes) == LAYERS, report
    assert all("sdpa_attention.py" in n.location for n in report.nodes), report
    # every call comes from that one file: the module path tells the layers apart
    assert [n.location.split(" ")[0] for n in report.nodes] == [
        f"model.layers.{i}.self_attn" for i in range(LAYERS)], report


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_prefill_matches_eager_and_rewrites_every_layer(kind, form):
    model, backend = build(kind), make_backend(CFG, inner="aot_eager")
    x = ids(80, seed=1)
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(x).logits
        torch.testing.assert_close(out, model(x).logits, rtol=1e-4, atol=1e-4)
    (report,) = backend.reports
    assert_every_layer_rewritten(report)


def test_llama_with_inductor(form):
    model, backend = build("llama"), make_backend(CFG)  # inner = Inductor
    x = ids(80, seed=2)
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(x).logits
        torch.testing.assert_close(out, model(x).logits, rtol=1e-4, atol=1e-4)
    assert_every_layer_rewritten(backend.reports[0])


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_padding_mask_is_left_alone(kind, form):
    model, backend = build(kind), make_backend(CFG, inner="aot_eager")
    x = ids(48, seed=3)
    attention_mask = torch.ones_like(x)
    attention_mask[1, :5] = 0  # left padding
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(x, attention_mask=attention_mask).logits
        torch._dynamo.reset()
        plain = torch.compile(model, backend="aot_eager")(x, attention_mask=attention_mask).logits
    nodes = all_nodes(backend.reports)
    assert len(nodes) == LAYERS and all(n.check == "causal" for n in nodes), backend.reports
    assert all("attention/padding mask" in n.reason for n in nodes)
    assert torch.equal(out, plain)


def test_generate_rewrites_prefill_only(form):
    model, backend = build("llama"), make_backend(CFG, inner="aot_eager")
    x = ids(40, seed=4)
    with torch.no_grad():
        expected = model.generate(x, max_new_tokens=5, do_sample=False)
        model.forward = torch.compile(model.forward, backend=backend)
        got = model.generate(x, max_new_tokens=5, do_sample=False)
    assert torch.equal(got, expected)
    prefill, *decode = backend.reports
    if any("attention_mask" in n.reason for n in prefill.nodes):
        # transformers 5.17 passes generate()'s all-ones attention_mask to forward and builds the
        # mask from it: runtime data, which the pass cannot prove causal.
        assert all(n.check == "causal" for n in prefill.nodes), prefill
    else:
        assert_every_layer_rewritten(prefill)
    assert decode and all(n.check == "seq_len" for n in all_nodes(decode)), decode


def test_generate_without_attention_mask_rewrites_prefill(form):
    """Calling the compiled forward as generate() does, minus the attention_mask: prefill (q_len ==
    kv_len) is rewritten, the decode step (q_len 1) is not, and the tokens match eager."""
    model, backend = build("llama"), make_backend(CFG, inner="aot_eager")
    compiled = torch.compile(model, backend=backend)
    x = ids(40, seed=8)
    with torch.no_grad():
        out = compiled(x, use_cache=True)
        ref = model(x, use_cache=True)
        nxt = out.logits[:, -1:].argmax(-1)
        step = compiled(nxt, past_key_values=out.past_key_values, use_cache=True).logits
        ref_step = model(nxt, past_key_values=ref.past_key_values, use_cache=True).logits
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(step, ref_step, rtol=1e-4, atol=1e-4)
    prefill, *decode = backend.reports
    assert_every_layer_rewritten(prefill)
    assert decode and all(n.check == "seq_len" for n in all_nodes(decode)), decode


def test_dynamic_shapes_two_lengths(form):
    model, backend = build("llama"), make_backend(CFG, inner="aot_eager")
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        for n in (72, 45):
            x = ids(n, seed=n)
            torch.testing.assert_close(compiled(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)
    (report,) = backend.reports  # one graph serves both lengths
    assert_every_layer_rewritten(report)
    assert "s" in report.nodes[0].shapes.split()[0]  # symbolic sequence length


def test_sliding_window_in_dynamic_graph_is_skipped(monkeypatch):
    """Mistral's window (32) is wider than the traced length (24) but not than later ones: the mask
    is evaluated at a larger size, the window shows, the call is kept."""
    monkeypatch.setattr(masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
    model, backend = build("mistral", sliding_window=32), make_backend(CFG, inner="aot_eager")
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        for n in (24, 50):
            x = ids(n, seed=n)
            torch.testing.assert_close(compiled(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)
    nodes = all_nodes(backend.reports)
    assert nodes and all(n.check == "causal" for n in nodes), backend.reports
    assert all("not the causal lower triangle" in n.reason for n in nodes)


def test_training_mode_is_untouched(form):
    model, backend = build("llama"), make_backend(CFG, inner="aot_eager")
    reference = build("llama").train()
    model.train()
    x = ids(40, seed=5)
    loss = torch.compile(model, backend=backend)(x, labels=x).loss
    loss.backward()
    expected = reference(x, labels=x).loss
    expected.backward()
    torch.testing.assert_close(loss, expected)
    nodes = all_nodes(backend.reports)
    assert len(nodes) == LAYERS and all(n.check == "inference" for n in nodes), backend.reports
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


def test_inductor_pass_matches_backend(form):
    model, backend, inductor_pass = build("llama"), make_backend(CFG, inner="eager"), \
        S2OInductorPass(CFG)
    x = ids(64, seed=6)
    with torch.no_grad():
        with torch._inductor.config.patch(pre_grad_custom_pass=inductor_pass,
                                          fx_graph_cache=False):
            out = torch.compile(model)(x).logits
        torch._dynamo.reset()
        torch.compile(model, backend=backend)(x)
        torch.testing.assert_close(out, model(x).logits, rtol=1e-4, atol=1e-4)

    def decisions(reports):
        return [(n.node, n.decision, n.check) for n in all_nodes(reports)]

    assert decisions(inductor_pass.reports) == decisions(backend.reports)
    assert_every_layer_rewritten(inductor_pass.reports[0])


def test_falcon_multi_query_broadcast_is_rewritten():
    """Falcon's multi-query attention hands SDPA one K/V head without enable_gqa (SDPA
    broadcasts it over the query heads): GQA with one group, rewritten in every layer."""
    config = transformers.FalconConfig(hidden_size=64, num_hidden_layers=LAYERS,
                                       num_attention_heads=4, vocab_size=VOCAB,
                                       attn_implementation="sdpa")
    assert config.multi_query and not config.new_decoder_architecture
    torch.manual_seed(0)
    model, backend = transformers.FalconForCausalLM(config).eval(), make_backend(
        CFG, inner="aot_eager")
    x = ids(80, seed=9)
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(x).logits
        torch.testing.assert_close(out, model(x).logits, rtol=1e-4, atol=1e-4)
    nodes = all_nodes(backend.reports)
    assert len(nodes) == LAYERS and all(n.rewritten for n in nodes), backend.reports
