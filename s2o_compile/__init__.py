"""s2o-compile: S2O sparse attention (early stopping over an online permutation) for
unmodified models through torch.compile."""
from .config import S2OConfig
from . import ops  # registers torch.ops.s2o.*
from .attention import sparse_attention

__all__ = ["S2OConfig", "sparse_attention"]
__version__ = "0.1.0"
