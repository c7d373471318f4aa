"""benchmarks/pp_protocol_sim.py: the Gluon pair walk's synchronization, modelled under random
interleavings, finishes with _stop_step's uniform stop decision and hangs with per-warp reads
(the bug it models), so the model can tell the two apart."""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pp_protocol_sim as S  # noqa: E402


def _hung(per_warp: bool, trials: int) -> int:
    rng = random.Random(7)
    return sum(not S.Kernel(rng, per_warp).run(rng, max_moves=20_000) for _ in range(trials))


def test_uniform_stop_decision_never_hangs():
    assert _hung(per_warp=False, trials=600) == 0


def test_per_warp_stop_reads_hang():
    assert _hung(per_warp=True, trials=300) > 0
