"""S2O inside an existing Inductor pipeline: the rewrite as a pre-grad custom pass.

For code that already calls torch.compile(model) with the default Inductor backend and should
keep doing so: install s2o_compile.S2OInductorPass as Inductor's pre_grad_custom_pass. The
setting is global, so the previous value is restored afterwards (or use
torch._inductor.config.patch(pre_grad_custom_pass=...) as a context manager).

    python examples/inductor_pipeline.py
"""
import torch
import torch._inductor.config as inductor_config
from transformers import LlamaConfig, LlamaForCausalLM

import s2o_compile
from s2o_compile import S2OConfig

config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                     max_position_embeddings=1024, attn_implementation="sdpa")
torch.manual_seed(0)
model = LlamaForCausalLM(config).eval()
ids = torch.randint(0, config.vocab_size, (1, 512))

s2o_pass = s2o_compile.S2OInductorPass(S2OConfig(threshold=0.0, segment_size=128, block_m=64,
                                                 block_n=32, sink_tokens=32, local_window=64,
                                                 min_seq_len=0))
previous = inductor_config.pre_grad_custom_pass
inductor_config.pre_grad_custom_pass = s2o_pass
try:
    # Inductor's caches key compiled code by graph and pass (S2OInductorPass.uuid()); on a warm
    # cache, torch 2.13 reuses that code (with S2O in it) without calling the pass, whose reports
    # then stay empty. To show the reports on every run, compile from scratch here.
    with torch.no_grad(), inductor_config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        out = torch.compile(model)(ids).logits  # the default backend: Inductor
finally:
    inductor_config.pre_grad_custom_pass = previous

with torch.no_grad():
    ref = model(ids).logits
print(*s2o_pass.reports, sep="\n")
print(f"pre_grad_custom_pass restored: {inductor_config.pre_grad_custom_pass is previous}")
print(f"max |logits - eager| = {(out - ref).abs().max().item():.2e} (threshold 0: S2O is exact)")
