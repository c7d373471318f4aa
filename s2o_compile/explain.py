"""explain(): what the S2O rewrite would do to a model, without Inductor.

    print(s2o_compile.explain(model, input_ids, config=cfg))

Compiles fn_or_module with a capturing backend, runs it once on the example inputs, and reports
per graph (Dynamo may split a model at graph breaks) the SDPA calls with their location, shapes,
decision and reason, plus the graph code before and after the rewrite. Grad mode matters: run it
under torch.no_grad() as you would run inference, or every call is kept for needing grad.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import S2OConfig
from .passes import RewriteReport, rewrite_sdpa
from .passes.report import NodeReport


# Why a model shows no SDPA call, in the words a user needs to fix it.
NO_SDPA_HINT = ("No scaled_dot_product_attention call in the traced graphs: S2O rewrites only "
                "those. Attention written out (matmul + softmax), FlexAttention, the fused "
                "inference path of torch.nn.MultiheadAttention / TransformerEncoderLayer, or a "
                "Hugging Face model loaded with another attn_implementation has none: load it "
                "with attn_implementation=\"sdpa\" (some families, e.g. Gemma 2, do not offer "
                "it).")


@dataclass
class GraphExplanation:
    """One Dynamo graph: its rewrite report and its code before and after."""

    report: RewriteReport
    code_before: str
    code_after: str


@dataclass
class Explanation:
    graphs: list[GraphExplanation] = field(default_factory=list)

    @property
    def nodes(self) -> list[NodeReport]:
        """Every SDPA call of every graph, in order."""
        return [n for g in self.graphs for n in g.report.nodes]

    @property
    def num_rewritten(self) -> int:
        return sum(g.report.num_rewritten for g in self.graphs)

    @property
    def code_before(self) -> str:
        return "\n".join(g.code_before for g in self.graphs)

    @property
    def code_after(self) -> str:
        return "\n".join(g.code_after for g in self.graphs)

    @property
    def summary(self) -> str:
        """The counts, and with no SDPA call why that happens."""
        head = (f"S2O explain: {len(self.graphs)} graph(s), {len(self.nodes)} SDPA call(s), "
                f"{self.num_rewritten} rewritten")
        return head if self.nodes else head + "\n" + NO_SDPA_HINT

    def __str__(self) -> str:
        return "\n\n".join([self.summary] + [str(g.report) for g in self.graphs])


def explain(fn_or_module, *example_inputs, config: S2OConfig | None = None,
            **example_kwargs) -> Explanation:
    """Run fn_or_module(*example_inputs, **example_kwargs) compiled with a capturing backend.

    The rewritten graphs run eagerly (no Inductor), so explain is quick and also executes S2O.
    """
    result = Explanation()

    def capture(gm: torch.fx.GraphModule, _example_inputs):
        before = gm.code
        report = rewrite_sdpa(gm, config)
        result.graphs.append(GraphExplanation(report, before, gm.code))
        return gm.forward

    torch.compile(fn_or_module, backend=capture)(*example_inputs, **example_kwargs)
    return result
