"""What the SDPA rewrite decided, per node, in a form users can print and tests can assert on."""
from __future__ import annotations

from dataclasses import dataclass, field

REWRITTEN = "rewritten"
SKIPPED = "skipped"


@dataclass
class NodeReport:
    """One SDPA call of a graph: where it is, its shapes, and why it was (not) rewritten.

    check is the name of the eligibility check that failed (None when rewritten); reason is a
    sentence for humans.
    """

    node: str
    location: str
    shapes: str
    decision: str
    check: str | None = None
    reason: str = ""

    @property
    def rewritten(self) -> bool:
        return self.decision == REWRITTEN

    def __str__(self) -> str:
        why = f"{self.check}: {self.reason}" if self.check else self.reason
        return f"{self.node:<24} {self.decision:<9} {self.shapes}  @ {self.location}\n    {why}"


@dataclass
class RewriteReport:
    """All SDPA calls found in one graph."""

    graph: str = ""
    nodes: list[NodeReport] = field(default_factory=list)

    @property
    def rewritten(self) -> list[NodeReport]:
        return [n for n in self.nodes if n.rewritten]

    @property
    def skipped(self) -> list[NodeReport]:
        return [n for n in self.nodes if not n.rewritten]

    @property
    def num_rewritten(self) -> int:
        return len(self.rewritten)

    def reasons(self) -> list[str | None]:
        """The failed check of every node, in graph order (None for rewritten nodes)."""
        return [n.check for n in self.nodes]

    def __str__(self) -> str:
        head = (f"S2O rewrite{' of graph ' + self.graph if self.graph else ''}: "
                f"{self.num_rewritten} of {len(self.nodes)} SDPA call(s) rewritten")
        return "\n".join([head] + [str(n) for n in self.nodes])
