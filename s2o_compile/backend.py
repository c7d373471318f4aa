"""The torch.compile backend: rewrite SDPA to S2O on the Dynamo graph, then compile with Inductor.

    model = torch.compile(model, backend="s2o")                  # default S2OConfig
    backend = make_backend(S2OConfig(threshold=1e-3))            # another config
    model = torch.compile(model, backend=backend)
    print(*backend.reports, sep="\n")                            # what was rewritten, per graph

The rewrite runs on the Dynamo graph, before AOT autograd (afterwards SDPA is split into
backend-specific ops and enable_gqa is gone).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .config import S2OConfig
from .passes import RewriteReport, rewrite_sdpa
from .passes.report import NodeReport

log = logging.getLogger("s2o_compile")

BACKEND_NAME = "s2o"


def _inner_compiler(inner) -> Callable:
    if callable(inner):
        return inner
    if inner == "inductor":
        def inductor(gm, example_inputs):
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(gm, example_inputs)
        return inductor
    if inner == "eager":
        return lambda gm, example_inputs: gm.forward
    if isinstance(inner, str):
        from torch._dynamo.backends.registry import lookup_backend

        if inner == BACKEND_NAME:
            raise ValueError("s2o: inner compiler 's2o' would apply the rewrite twice")
        return lookup_backend(inner)  # "aot_eager" and any other registered backend
    raise TypeError(f"s2o: inner must be a backend name or a callable, got {type(inner).__name__}")


class S2OBackend:
    """A Dynamo backend: SDPA -> S2O rewrite, then the inner compiler.

    reports holds one RewriteReport per graph compiled successfully (a graph whose compile Dynamo
    restarts is reported once, by the attempt that completes).
    """

    __name__ = BACKEND_NAME  # Dynamo and its logs name backends by __name__

    def __init__(self, config: S2OConfig | None = None, inner: str | Callable = "inductor"):
        self.config = config if config is not None else S2OConfig()
        if not isinstance(self.config, S2OConfig):
            raise TypeError(f"s2o: config must be an S2OConfig, got {type(self.config).__name__}")
        self.inner = inner
        self._compile = _inner_compiler(inner)
        self.reports: list[RewriteReport] = []

    def rewrite(self, gm: torch.fx.GraphModule) -> RewriteReport:
        """The rewrite alone; an unexpected error leaves the graph to the inner compiler."""
        try:
            return rewrite_sdpa(gm, self.config)
        except Exception as e:  # noqa: BLE001 - never crash the user's compile
            log.warning("s2o: SDPA rewrite failed, graph compiled without it: %s", e,
                        exc_info=True)
            return RewriteReport(nodes=[NodeReport("<graph>", "?", "", "skipped",
                                                   "analysis_error",
                                                   f"{type(e).__name__}: {e}")])

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        report = self.rewrite(gm)
        compiled = self._compile(gm, example_inputs)
        self.reports.append(report)
        return compiled

    def __repr__(self) -> str:
        return f"S2OBackend(config={self.config!r}, inner={self.inner!r})"


def make_backend(config: S2OConfig | None = None, inner: str | Callable = "inductor") -> S2OBackend:
    """A backend for torch.compile with its own config, inner compiler and reports.

    inner: "inductor" (default), "aot_eager" (debugging), "eager", any registered backend name,
    or a callable (gm, example_inputs) -> compiled callable.
    """
    return S2OBackend(config, inner)


s2o_backend = S2OBackend()
"""The default backend (default S2OConfig, Inductor): torch.compile(model, backend="s2o")."""


def register() -> None:
    """Make backend="s2o" work after `import s2o_compile`, even without the installed entry point.

    Registration goes through Dynamo's own entry-point mechanism: if "s2o" is not known yet, an
    EntryPoint to this module is recorded and Dynamo loads it on first use. The name is therefore
    registered exactly once whatever the order (import first, entry point first, importing twice),
    and Dynamo's duplicate-name assertion never fires.
    """
    try:
        from importlib.metadata import EntryPoint

        from torch._dynamo.backends import registry
    except Exception:  # noqa: BLE001 - a torch without this registry: the entry point still works
        return
    if BACKEND_NAME in registry._BACKENDS or BACKEND_NAME in registry._COMPILER_FNS:
        return
    registry._BACKENDS[BACKEND_NAME] = EntryPoint(
        name=BACKEND_NAME, value=f"{__name__}:s2o_backend", group="torch_dynamo_backends")
