"""benchmarks/pp_protocol_sim.py: the Gluon pair walk's synchronization (one pair per CTA, or
several: the persistent variant), modelled under random interleavings, finishes with
_stop_step's uniform stop decision (plain, FA3-order and ping-pong consumers; read before or
after the producer's wait for the buffer) and hangs with
per-warp reads, the bug it models, so the model can tell them apart."""
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pp_protocol_sim as S  # noqa: E402


def _hung(trials: int, per_warp=False, deferred=False, pingpong=False, early_end=False) -> int:
    rng = random.Random(7)
    return sum(not S.Kernel(rng, per_warp, deferred, pingpong, early_end=early_end).run(
        rng, max_moves=20_000) for _ in range(trials))


@pytest.mark.parametrize("deferred,pingpong", [(False, False), (True, False), (True, True)])
def test_uniform_stop_decision_never_hangs(deferred, pingpong):
    assert _hung(400, deferred=deferred, pingpong=pingpong) == 0


def test_end_read_before_the_buffer_wait_never_hangs():
    """EARLY_END: the producer reads the pair's end before its wait for the step's buffer and
    waits only for a step it copies; a stale end costs a copy, never a wait for a step the
    consumers do not release."""
    assert _hung(400, early_end=True) == 0


def test_per_warp_stop_reads_hang():
    assert _hung(300, per_warp=True) > 0


def _hung_persistent(trials: int, untagged=False) -> int:
    rng = random.Random(7)
    return sum(not S.Kernel(rng, False, items=4, untagged=untagged).run(rng, max_moves=400_000)
               for _ in range(trials))


def test_persistent_pairs_never_hang():
    """The persistent variant (several pairs per CTA, counters carried across pairs, steps
    issued past a pair's end tagged and released unread) finishes, both consumers agreeing on
    every pair's end."""
    assert _hung_persistent(400) == 0


def test_persistent_pairs_without_tags_hang():
    """Reading the steps issued past a pair's end as the next pair's hangs: the model sees it."""
    assert _hung_persistent(1000, untagged=True) > 0
