"""benchmarks/pair_ramp.py: the pair kernel's per-CTA stamps split into an SM's ramp, walk,
drain, gap and tail. Synthetic stamps with known parts (two SMs whose clocks are not aligned,
CTAs of different lengths) must come back as those parts, per pair and in steps."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pair_ramp as R  # noqa: E402


def _cta(sm, clk0, gt0, ramp, steps, step, drain, q=None, lone=None, waits=None):
    """One CTA's stamps: starts at clk0 on its SM (globaltimer gt0, 1 ns a clock), its first
    step lands after `ramp`, `steps` steps of `step`, its last warp ends `drain` after.
    lone=(k, lone_step): tile 0 stops after step k, and the other tile's remaining steps
    take lone_step each (it stops at the pair's end). waits: the data-wait slots (22-29) by
    name, 0 where not given."""
    row = [0] * R.WIDTH
    first = clk0 + ramp
    loop = first + steps * step
    stops = dict(stop0=0, stop1=0, stop0_clk=0, stop1_clk=0)
    if lone:
        k, lone_step = lone
        loop = first + k * step + (steps - k) * lone_step
        stops = dict(stop0=k, stop0_clk=first + k * step, stop1=steps, stop1_clk=loop)
    slots = dict(gt_start=gt0, start=clk0, sm=sm, q=clk0 + (q or ramp), first=first, loop=loop,
                 out0=loop + drain, steps=steps, prod_loop=loop, prod_end=loop + drain // 2,
                 gt_end=gt0 + (loop + drain - clk0), out1=loop + drain // 3,
                 c0_start=clk0 + 1, loop1=loop, first_issued=clk0 + ramp // 2,
                 q_landed=clk0 + (q or ramp), prod_start=clk0 + 2, first_rows=clk0 + 3,
                 **stops)
    slots.update({n: 0 for n in R.SLOTS if n.startswith(("wait_", "steps_", "ph_"))})
    slots.update(waits or {})
    for name, i in R.SLOTS.items():
        row[i] = slots[name]
    return row


def test_split_recovers_the_parts():
    rows, gap, step = [], 30, 10
    for sm, (clk0, gt0) in enumerate([(1000, 0), (500_000, 40)]):  # clocks not aligned
        t = clk0
        for steps in (20, 12):
            rows.append(_cta(sm, t, gt0 + (t - clk0), ramp=25, steps=steps, step=step,
                             drain=8, q=15))
            t += 25 + steps * step + 8 + gap
    out = R.split(torch.tensor(rows))
    pairs = len(rows)
    assert out["pairs"] == pairs and out["sms"] == 2
    assert out["ns_per_clk"] == pytest.approx(1.0)
    assert out["step_us_on_sm"] * 1e3 == pytest.approx(step)
    assert out["ramp"]["steps_per_pair"] == pytest.approx(25 / step)
    assert out["q_stored"]["steps_per_pair"] == pytest.approx(15 / step)
    assert out["walk"]["steps_per_pair"] == pytest.approx(16)  # (20 + 12) / 2
    assert out["drain"]["steps_per_pair"] == pytest.approx(8 / step)
    assert out["gap"]["steps_per_pair"] == pytest.approx(gap / 2 / step)  # one gap per SM
    # SM 1 starts 40 ns later on the globaltimer and runs as long: it ends last, SM 0 waits
    assert out["tail"]["steps_per_pair"] == pytest.approx(40 / pairs / step)
    assert out["drain_out1"]["steps_per_pair"] == pytest.approx((8 // 3) / step)
    assert out["ramp_prod_start"]["steps_per_pair"] == pytest.approx(2 / step)
    assert out["ramp_first_rows"]["steps_per_pair"] == pytest.approx(3 / step)
    assert out["lone_share"] == 0.0  # no tile stopped before its pair's end


def test_lone_phase_prices_the_steps_one_tile_walks_alone():
    """Of two CTAs, one has a tile stop after 12 of 20 steps; the other tile's last 8 steps
    take 7 clocks each against 10 for a shared step."""
    rows = [_cta(0, 1000, 0, ramp=25, steps=20, step=10, drain=8, lone=(12, 7)),
            _cta(0, 1400, 400, ramp=25, steps=16, step=10, drain=8)]
    out = R.split(torch.tensor(rows))
    assert out["lone_share"] == pytest.approx(8 / 36)
    assert out["lone_pairs"] == pytest.approx(0.5)
    assert out["lone_step_us"] * 1e3 == pytest.approx(7)
    assert out["shared_step_us"] * 1e3 == pytest.approx(10)


def test_data_waits_price_a_step_s_wait_for_its_kv():
    """Two CTAs: while both tiles walk, 30 steps wait 2 clocks each in all; alone, 8 steps
    wait 5 each (consumer 1's) - per step, whichever consumer and CTA they come from."""
    rows = [_cta(0, 1000, 0, ramp=25, steps=20, step=10, drain=8, lone=(12, 7),
                 waits=dict(wait_both0=24, wait_both1=24, steps_both0=12, steps_both1=12,
                            wait_alone1=40, steps_alone1=8)),
            _cta(0, 1400, 400, ramp=25, steps=16, step=10, drain=8,
                 waits=dict(wait_both0=6, wait_both1=6, steps_both0=3, steps_both1=3))]
    out = R.split(torch.tensor(rows))
    assert out["wait_both_us"] * 1e3 == pytest.approx(60 / 30)
    assert out["wait_alone_us"] * 1e3 == pytest.approx(5)



def test_step_phases_are_clocks_per_counted_step():
    # consumer 0: 2 CTAs with 10 and 30 walk steps both walk; consumer 1 counted none
    rows = []
    for steps, scale in ((10, 1), (30, 2)):
        ph = dict(ph_fence0=5 * steps * scale, ph_qk0=400 * steps * scale,
                  ph_softmax0=600 * steps * scale, ph_pv0=500 * steps * scale,
                  ph_step0=1700 * steps * scale, ph_steps0=steps)
        rows.append(_cta(0, 1000 * steps, 0, ramp=25, steps=steps, step=10, drain=8, waits=ph))
    out = R.step_phases({k: torch.tensor(rows, dtype=torch.float64)[:, i]
                         for k, i in R.SLOTS.items()})
    # (10 x 1 + 30 x 2) / 40 = 1.75 times the per-step clocks
    assert out["phase_qk0_clk"] == pytest.approx(400 * 1.75)
    assert out["phase_step0_clk"] == pytest.approx(1700 * 1.75)
    assert out["phase_steps0"] == 40 and "phase_qk1_clk" not in out
