"""Why was (or wasn't) an attention call rewritten? explain(), graph code, and logging.

Three tools, on a small random-init HF Llama:
  1. logging: the "s2o_compile" logger reports every rewrite and every kept call at INFO;
  2. explain(model, *inputs): per SDPA call its location, shapes, decision and the check that
     failed, without Inductor (the rewritten graph runs eagerly, so it is quick);
  3. the graph code before and after the rewrite (explanation.graphs[i].code_before/after).
The second call passes a padding mask: the mask is runtime data, not provably causal, so the
call keeps SDPA and the report names the failed check ("causal").

    python examples/inspect_graphs.py
"""
import logging
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from s2o_compile import S2OConfig, explain

logging.basicConfig(format="[log] %(name)s %(levelname)s: %(message)s", stream=sys.stdout)
logging.getLogger("s2o_compile").setLevel(logging.INFO)

config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                     max_position_embeddings=1024, attn_implementation="sdpa")
torch.manual_seed(0)
model = LlamaForCausalLM(config).eval()
ids = torch.randint(0, config.vocab_size, (2, 256))
cfg = S2OConfig(min_seq_len=0)

print("== 1. causal prefill: every call rewritten")
with torch.no_grad():  # explain under no_grad, as inference runs: calls needing grad are kept
    explanation = explain(model, ids, config=cfg)
print(explanation)


def sdpa_lines(code: str) -> str:
    """The lines of a graph's code that call attention (the full code is long)."""
    return "\n".join(line for line in code.splitlines()
                     if "scaled_dot_product_attention" in line or "s2o." in line)


graph = explanation.graphs[0]
print("\n== code before the rewrite (attention lines)\n" + sdpa_lines(graph.code_before))
print("\n== code after the rewrite (attention lines)\n" + sdpa_lines(graph.code_after))

print("\n== 2. left padding: the mask is runtime data, the calls keep SDPA")
mask = torch.ones_like(ids)
mask[1, :10] = 0
torch._dynamo.reset()
with torch.no_grad():
    padded = explain(model, ids, attention_mask=mask, config=cfg)
print(padded)
for node in padded.nodes:
    print(f"{node.node}: decision={node.decision} check={node.check}")
