"""Graph passes that put S2O into unmodified models: the SDPA rewrite and its Inductor wrapper."""
from .report import NodeReport, RewriteReport
from .sdpa_rewrite import CHECKS, rewrite_graph, rewrite_sdpa

__all__ = ["CHECKS", "NodeReport", "RewriteReport", "S2OInductorPass", "rewrite_graph",
           "rewrite_sdpa"]


def __getattr__(name):
    # Lazy: importing torch._inductor is slow and only the Inductor pass needs it.
    if name == "S2OInductorPass":
        from .inductor_pass import S2OInductorPass

        return S2OInductorPass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
