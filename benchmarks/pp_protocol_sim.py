"""A model of the Gluon pair walk's synchronization (s2o_compile/kernels/gluon_pair.py,
_pair_producer and _pair_consumer), run under random interleavings on the CPU: does every agent
finish?

Agents: PW producer warps, each deciding on its own when to stop copying; consumers A and B
(a warpgroup each, synchronized inside by their own barriers, so one agent each).
Shared state: the mbarriers `ready` (PW arrivals per phase: the copies' cp.async arrivals, which
land later, asynchronously), `empty` (2: both consumers), `sync` (2: the decisions at each walk
chunk's end), the consumers' decisions, stop_smem (the pair's end), and the producer
partition's named barrier (bar.sync 3, 128 in the SASS: Triton's membar pass puts one in the
producer's loop and one after it; any PW warps arriving release it, whichever site they are at).

    python benchmarks/pp_protocol_sim.py               # the kernel's protocol: no hang
    python benchmarks/pp_protocol_sim.py --per-warp    # each warp reads stop_smem alone: hangs
    python benchmarks/pp_protocol_sim.py --early-end   # the end read before the buffer's wait (not kept, session 21)
    python benchmarks/pp_protocol_sim.py --deferred    # the FA3-order consumers (--pingpong: turns)

With --per-warp (the protocol of sessions 9-12 before _stop_step), a consumer's write of the
pair's end can land between two producer warps' reads; one warp then leaves the loop a step
before the others, its exit barrier completes the others' loop barrier, and they hang at the
next one (about one trial in ten here; rarely on the GPU, where the warps read within a few
cycles of each other: the hangs seen on H100 and H200). _stop_step makes the decision the same
for all warps (each writes what it read, a barrier, then all take the minimum of the same slots).
The model also found that the FA3-order consumers must post the pair's end before flushing
their last P @ V (whose release lets the producer go on): flushing first hung 7 of 3000 trials.

    python benchmarks/pp_protocol_sim.py --items 4              # persistent: 4 pairs per CTA
    python benchmarks/pp_protocol_sim.py --items 4 --untagged   # without the tags: hangs

The persistent variant (session 13, benchmarks/gluon_walk.py's _s2o_gluon_persistent_kernel)
walks several pairs per CTA with the slot, phase and exchange counters carried across pairs.
The producer issues up to NBUF - 1 steps past a pair's end before it sees the end; those
steps stay in the stream, each buffer tagged with its pair, and the consumers release them
unread before the next pair's first step. A posted end is a global step, so the one left from
the previous pair (never above the next pair's first step) reads as none. Without the tags
(the consumers take the leftover steps as the next pair's) 5-7 of 1000 trials hang.
"""
import argparse
import random


class MBarrier:
    """An mbarrier: a phase completes when `count` arrivals have come."""

    def __init__(self, count):
        self.count, self.pending, self.phase = count, count, 0

    def arrive(self):
        self.pending -= 1
        if self.pending == 0:
            self.phase, self.pending = self.phase + 1, self.count

    def done(self, parity):
        """try_wait.parity: the phase of this parity has completed."""
        return (self.phase & 1) != parity


class Item:
    """One tile pair's stream: n_total steps (n_dense dense ones, then the walk)."""

    def __init__(self, rng):
        self.n_dense = rng.randint(2, 6)
        self.n_total = self.n_dense + rng.randint(0, 40)
        self.b_valid = rng.random() < 0.8  # the second tile has rows (not past N)
        self.holds_at = [rng.randint(0, 6), rng.randint(0, 6)]  # chunk where each tile's rule holds


class Kernel:
    """One CTA walking `items` tile pairs one after another (1: the pair kernel; more: the
    persistent variant, whose agents count steps and exchanges across pairs: a buffer's slot and
    phase come from the global step, and the pair's end is posted as a global step, so an end
    left from the previous pair (never above the next pair's first step) reads as none)."""

    def __init__(self, rng, per_warp, deferred=False, pingpong=False, items=1, untagged=False,
                 oldest_end=False, early_end=False):
        self.NBUF = rng.choice([2, 3, 4, 6])
        self.CHUNK = rng.choice([1, 2, 4, 8])  # walk steps per stop decision
        self.PW = rng.choice([1, 2, 4])
        self.items = [Item(rng) for _ in range(items)]
        first = self.items[0]  # the single-pair kernel's fields
        self.n_dense, self.n_total = first.n_dense, first.n_total
        self.b_valid, self.holds_at = first.b_valid, first.holds_at
        self.per_warp, self.deferred, self.pingpong = per_warp, deferred, pingpong
        self.persistent = items > 1
        self.untagged = untagged  # persistent, but consumers read every slot as the next pair's
        self.oldest_end = oldest_end  # persistent, but the producer takes the smallest copy
        self.early_end = early_end  # the producer reads the end before its wait for the buffer
        self.turn = [MBarrier(1), MBarrier(1)]
        self.turn[0].arrive()  # the first tile issues first
        self.ready = [MBarrier(self.PW) for _ in range(self.NBUF)]
        self.empty = [MBarrier(2) for _ in range(self.NBUF)]
        self.sync = MBarrier(2)
        self.decide = [0] * 4
        # stop_smem: a copy of the pair's end per producer warp. A consumer warpgroup posts it
        # with one store per warp, then one thread arrives on `empty`: only copy 0 (that
        # thread's own store) is ordered before the arrival; the others land later (pending)
        self.stops = [0 if self.persistent else self.n_total] * self.PW
        self.pending_stops = []
        self.seen = {}  # step -> what the producer warps read there (_stop_step's slots)
        self.landing = []  # cp.async arrivals in flight: their `ready` slots
        self.bar = dict(arrived=0, generation=0)
        self.ends = {}  # consumer -> the (global) end of each pair it walked
        self.tags = [None] * self.NBUF  # persistent: the pair each buffer's step belongs to

    def named_barrier(self):
        gen = self.bar["generation"]
        self.bar["arrived"] += 1
        if self.bar["arrived"] == self.PW:
            self.bar["arrived"], self.bar["generation"] = 0, gen + 1
        while self.bar["generation"] == gen:
            yield

    def post_stop(self, value):
        self.stops[0] = value
        self.pending_stops += [(i, value) for i in range(1, self.PW)]

    def stop_step(self, warp, j):
        """_stop_step: each warp writes what it read, a barrier, all take the minimum."""
        self.seen.setdefault(j, []).append(self.stops[warp])
        yield
        yield from self.named_barrier()
        return min(self.seen[j])

    def producer(self, warp):
        if self.persistent:
            yield from self.persistent_producer(warp)
            return
        j, n_end = 0, self.n_total
        while j < n_end:
            yield from self.named_barrier()  # the membar pass's barrier in the loop
            slot = j % self.NBUF
            if j >= self.NBUF:
                if self.early_end:  # the end read first, the wait only for a step copied
                    n_end = min(n_end, (yield from self.stop_step(warp, j)))
                if j < n_end:
                    while not self.empty[slot].done(((j // self.NBUF) - 1) & 1):
                        yield
                if self.per_warp:
                    n_end = min(n_end, self.stops[warp])
                    yield
                elif not self.early_end:
                    n_end = min(n_end, (yield from self.stop_step(warp, j)))
            if j < n_end:
                self.landing.append(slot)
            j += 1
            yield
        yield from self.named_barrier()  # the one after the loop

    def persistent_producer(self, warp):
        """The producer over all pairs. j counts the steps issued (slots): a pair runs from its
        first slot `base` until its end; steps issued past a pair's end before the producer saw
        it (up to NBUF - 1) stay in the stream, tagged with their pair, and the consumers
        release them unread. A posted end counts only if above base (the pair's own). Each
        claim reads the end through _stop_step's slots, indexed by a claim count (a pair that
        ends at a claim claims that slot again for the next pair)."""
        j, claims = 0, 0
        for index, item in enumerate(self.items):
            base, n_end = j, j + item.n_total
            while j < n_end:
                yield from self.named_barrier()
                slot = j % self.NBUF
                if j >= self.NBUF:
                    while not self.empty[slot].done(((j // self.NBUF) - 1) & 1):
                        yield
                    self.seen.setdefault(claims, []).append(self.stops[warp])
                    yield
                    yield from self.named_barrier()
                    # the newest end: the largest copy (older ends are smaller global steps)
                    posted = (min if self.oldest_end else max)(self.seen[claims])
                    claims += 1
                    if posted > base:
                        n_end = min(n_end, posted)
                if j < n_end:
                    self.tags[slot] = index  # stored before the copies' arrivals (+1 arrival)
                    self.landing.append(slot)
                    j += 1
                yield
        yield from self.named_barrier()

    def exchange(self, X, c, stopped):
        """_exchange at chunk end number c: post this tile's decision, wait for the other's,
        return it."""
        self.decide[(c % 2) * 2 + X] = int(stopped)
        yield
        self.sync.arrive()
        while not self.sync.done(c & 1):
            yield
        return self.decide[(c % 2) * 2 + 1 - X]

    def persistent_consumer(self, X):
        """The plain consumer over all pairs: global slots s (unread ones, tagged with an
        earlier pair, are released first) and a global exchange count."""
        s, n_ex = 0, 0
        ends = self.ends.setdefault(X, [])
        for index, item in enumerate(self.items):
            while True:  # the previous pair's steps issued past its end
                while not self.ready[s % self.NBUF].done((s // self.NBUF) & 1):
                    yield
                if self.tags[s % self.NBUF] == index or self.untagged:
                    break
                assert self.tags[s % self.NBUF] < index, "a pair's first step was skipped"
                self.empty[s % self.NBUF].arrive()
                s += 1
                yield
            base = s
            active = X == 0 or item.b_valid
            n_end = n_me = base + item.n_total
            while s < n_end:
                slot = s % self.NBUF
                while not self.ready[slot].done((s // self.NBUF) & 1):
                    yield
                w = s - base - item.n_dense
                computes = active and (X == 1 or s > base)
                chunk_end = w >= 0 and (w + 1) % self.CHUNK == 0
                if computes and chunk_end and w // self.CHUNK >= item.holds_at[X]:
                    n_me = min(n_me, s + 1)
                yield
                if chunk_end and s + 1 < n_end:
                    stopped = n_me <= s + 1 or not active
                    other = yield from self.exchange(X, n_ex, stopped)
                    n_ex += 1
                    active = not stopped
                    if stopped and other:
                        n_end = s + 1
                        self.post_stop(n_end)
                        yield
                self.empty[slot].arrive()
                s += 1
                yield
            ends.append(n_end)

    def consumer(self, X):
        """_pair_consumer; deferred: session 12's FA3-order consumer (a computed step's buffer
        is released at the next computed step, or by the flush when the tile stops or the
        stream ends), with pingpong its turns (the consumers alternate on the steps both
        compute)."""
        if self.persistent:
            yield from self.persistent_consumer(X)
            return
        active = X == 0 or self.b_valid
        both = self.b_valid
        s, n_end, n_me = 0, self.n_total, self.n_total
        prev, turns = None, 0  # deferred: the buffer of the pending P @ V
        while s < n_end:
            slot = s % self.NBUF
            while not self.ready[slot].done((s // self.NBUF) & 1):
                yield
            w = s - self.n_dense
            computes = active and (X == 1 or s > 0)
            if computes and self.pingpong and both and s >= 1:
                while not self.turn[X].done(turns & 1):
                    yield
                turns += 1
                self.turn[1 - X].arrive()
            chunk_end = w >= 0 and (w + 1) % self.CHUNK == 0
            if computes and chunk_end and w // self.CHUNK >= self.holds_at[X]:
                n_me = min(n_me, s + 1)  # the stop rule held in this chunk
            yield
            if self.deferred and computes:
                if prev is not None:
                    self.empty[prev].arrive()
                prev = slot
            if chunk_end and s + 1 < n_end:
                stopped = n_me <= s + 1 or not active
                other = yield from self.exchange(X, w // self.CHUNK, stopped)
                both = both and not stopped and not other
                active = not stopped
                if stopped and other:  # the pair's end, before the releases of its last step
                    n_end = s + 1
                    self.post_stop(n_end)
                    yield
                if stopped and prev is not None:  # the flush
                    self.empty[prev].arrive()
                    prev = None
                    yield
            if not (self.deferred and computes):
                self.empty[slot].arrive()
            s += 1
            yield
        if prev is not None:
            self.empty[prev].arrive()
        self.ends[X] = [n_end]

    def run(self, rng, max_moves=100_000):
        """True if every agent finished."""
        agents = [self.producer(w) for w in range(self.PW)] + [self.consumer(0), self.consumer(1)]
        for _ in range(max_moves):
            if not agents:  # and both consumers saw the same pair ends
                return all(e == self.ends[0] for e in self.ends.values())
            if self.landing and rng.random() < 0.3:
                self.ready[self.landing.pop(rng.randrange(len(self.landing)))].arrive()
                continue
            if self.pending_stops and rng.random() < 0.2:
                i, value = self.pending_stops.pop(rng.randrange(len(self.pending_stops)))
                self.stops[i] = value
                continue
            agent = rng.choice(agents)
            try:
                next(agent)
            except StopIteration:
                agents.remove(agent)
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-warp", action="store_true",
                    help="each producer warp reads stop_smem alone (before _stop_step)")
    ap.add_argument("--deferred", action="store_true", help="the FA3-order consumers")
    ap.add_argument("--pingpong", action="store_true", help="deferred, taking turns")
    ap.add_argument("--items", type=int, default=1,
                    help="pairs per CTA (> 1: the persistent variant, plain consumers)")
    ap.add_argument("--untagged", action="store_true",
                    help="persistent without the tags: steps issued past a pair's end are "
                         "read as the next pair's (hangs)")
    ap.add_argument("--oldest-end", action="store_true",
                    help="persistent, the producer taking the smallest copy of the end (the "
                         "single-pair rule; hangs)")
    ap.add_argument("--early-end", action="store_true",
                    help="the producer reads the pair's end (_stop_step) before its wait for "
                         "the step's buffer, and waits only to copy")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    deferred = args.deferred or args.pingpong
    hung = sum(not Kernel(rng, args.per_warp, deferred, args.pingpong, args.items,
                          args.untagged, args.oldest_end, args.early_end).run(
        rng, max_moves=100_000 * args.items) for _ in range(args.trials))
    consumers = "ping-pong" if args.pingpong else "FA3-order" if deferred else "plain"
    consumers += f", {args.items} pairs per CTA" if args.items > 1 else ""
    reads = "per-warp reads" if args.per_warp else "_stop_step"
    reads += " before the buffer's wait" if args.early_end else ""
    print(f"{reads}, {consumers} consumers: "
          f"{hung} of {args.trials} trials did not finish")


if __name__ == "__main__":
    main()
