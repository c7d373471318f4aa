"""S2OInductorPass: the SDPA rewrite as an Inductor pre-grad custom pass.

For pipelines that already compile with Inductor:

    torch._inductor.config.pre_grad_custom_pass = S2OInductorPass(config)

Inductor hands pre-grad passes the Dynamo-level torch.fx.Graph (SDPA still one
torch._C._nn.scaled_dot_product_attention node with enable_gqa), before AOT autograd. uuid() hashes
the package's source files and the config, so the FX graph cache never mixes graphs compiled with
different passes or configs.
"""
from __future__ import annotations

import hashlib
import os

from torch._inductor.custom_graph_pass import CustomGraphPass
from torch.fx import Graph

from ..config import S2OConfig
from .report import RewriteReport
from .sdpa_rewrite import rewrite_sdpa

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sources() -> list[str]:
    """Every .py file of s2o_compile: the pass, and the op and kernels it inserts."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(_PACKAGE)
                  for f in files if f.endswith(".py"))


class S2OInductorPass(CustomGraphPass):
    """Rewrite eligible SDPA calls to S2O inside Inductor; .reports: one RewriteReport per graph."""

    def __init__(self, config: S2OConfig | None = None):
        self.config = config if config is not None else S2OConfig()
        if not isinstance(self.config, S2OConfig):
            raise TypeError(f"s2o: config must be an S2OConfig, got {type(self.config).__name__}")
        self.reports: list[RewriteReport] = []

    def __call__(self, graph: Graph) -> None:
        self.reports.append(rewrite_sdpa(graph, self.config))

    def __reduce__(self):
        # torch 2.11 pickles the pass into the FX graph cache key: keep the key to the config,
        # not the reports gathered so far.
        return (type(self), (self.config,))

    def uuid(self) -> str:
        h = hashlib.sha256(repr(self.config).encode())
        for path in _sources():
            with open(path, "rb") as f:
                h.update(f.read())
        return h.hexdigest()
