"""s2o-compile: S2O sparse attention (early stopping over an online permutation) for
unmodified models through torch.compile."""
from .config import S2OConfig
from . import ops  # registers torch.ops.s2o.*
from .attention import sparse_attention
from .passes import RewriteReport, rewrite_sdpa
from .backend import make_backend, s2o_backend
from .explain import explain
from . import backend as _backend

_backend.register()  # torch.compile(model, backend="s2o")


def __getattr__(name):
    # Lazy: importing torch._inductor is slow and only the Inductor pass needs it.
    if name == "S2OInductorPass":
        from .passes.inductor_pass import S2OInductorPass

        return S2OInductorPass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RewriteReport", "S2OConfig", "S2OInductorPass", "explain", "make_backend",
           "rewrite_sdpa", "s2o_backend", "sparse_attention"]
__version__ = "0.1.0"
