"""Crash states: which recorded writes (and which blocks of them) reached the disk.

A state is the pre-workload image plus, in issue order, a chosen set of writes; a torn write
contributes only its first blocks. The orders (``prefix``, ``epoch``, ``all``):

- prefix: the first k writes, for every k (a disk that writes in order and stops);
- torn: the first k writes plus the first j blocks of write k (a multi-block write cut short);
- epoch: every write before the last flush, plus any subset of the writes since it (a volatile
  cache persists any of them, in any order). 2^n subsets: past the budget, sampled with a seed.

The budget (``max_states``) bounds the total; states are deduplicated by their write list.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from fsproto.crash.record import Write

ORDERS = ("prefix", "epoch", "all")


@dataclass(frozen=True)
class CrashState:
    kind: str  # "prefix", "torn", "epoch"
    upto: int  # every write before this index persisted (kept as a number: states are many)
    extra: tuple[int, ...] = ()  # and these later ones (ascending)
    torn: tuple[int, int] | None = None  # (write index, blocks of it that persisted)

    @property
    def writes(self) -> tuple[int, ...]:
        """Indices of the whole writes that persisted."""
        return tuple(range(self.upto)) + self.extra

    @property
    def durable(self) -> int:
        """Writes before the first missing one: the flush point the state at least reached."""
        n = self.upto
        for i in self.extra:
            if i != n:
                break
            n += 1
        return n

    @property
    def present(self) -> int:
        """One past the last write any of whose blocks is in the state."""
        last = self.extra[-1] if self.extra else self.upto - 1
        if self.torn:
            last = max(last, self.torn[0])
        return last + 1

    @property
    def size(self) -> int:
        return self.upto + len(self.extra) + (1 if self.torn else 0)

    def describe(self, writes: list[Write]) -> list[str]:
        lines = [f"write {i}: lba {writes[i].lba} blocks {writes[i].blocks} epoch {writes[i].epoch}" for i in self.writes]
        if self.torn:
            i, j = self.torn
            lines.append(f"write {i}: lba {writes[i].lba} blocks {j} of {writes[i].blocks} (torn) epoch {writes[i].epoch}")
        return lines


def apply(base: bytes, block_size: int, writes: list[Write], state: CrashState) -> bytearray:
    img = bytearray(base)
    for i in state.writes:
        w = writes[i]
        img[w.lba * block_size : w.lba * block_size + len(w.data)] = w.data
    if state.torn:
        i, j = state.torn
        w = writes[i]
        img[w.lba * block_size : (w.lba + j) * block_size] = w.data[: j * block_size]
    return img


def _prefix(n: int) -> list[CrashState]:
    return [CrashState("prefix", k) for k in range(n + 1)]


def _torn(writes: list[Write]) -> list[CrashState]:
    out = []
    for w in writes:
        for j in sorted({1, w.blocks // 2, w.blocks - 1} - {0, w.blocks}):
            out.append(CrashState("torn", w.index, (), (w.index, j)))
    return out


def _epochs(writes: list[Write], flush_points: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, *flush_points, len(writes)})
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _epoch(writes: list[Write], flush_points: list[int], budget: int, rng: random.Random) -> list[CrashState]:
    out: list[CrashState] = []
    epochs = _epochs(writes, flush_points)
    share = max(1, budget // max(1, len(epochs)))
    for a, b in epochs:
        n = b - a
        if n <= 16 and (1 << n) <= share:
            subsets = (s for r in range(n + 1) for s in itertools.combinations(range(a, b), r))
        else:  # too many: the empty and full sets, every single write dropped, then random ones
            picks = {(), tuple(range(a, b))} | {tuple(x for x in range(a, b) if x != d) for d in range(a, b)}
            picks = set(itertools.islice(picks, share))
            for _ in range(share * 4):
                if len(picks) >= share:
                    break
                picks.add(tuple(x for x in range(a, b) if rng.random() < 0.5))
            subsets = iter(sorted(picks, key=len))
        out.extend(CrashState("epoch", a, tuple(s)) for s in subsets)
    return out


def enumerate_states(writes: list[Write], flush_points: list[int], order: str, max_states: int,
                     seed: int = 0) -> tuple[list[CrashState], int]:
    """(states to check, states considered before the budget cut), deduplicated."""
    rng = random.Random(seed)
    cands: list[CrashState] = []
    if order in ("prefix", "all"):
        cands += _prefix(len(writes)) + _torn(writes)
    if order in ("epoch", "all"):
        cands += _epoch(writes, flush_points, max_states, rng)
    seen: set[tuple] = set()
    unique = []
    for s in cands:
        key = (s.durable, tuple(i for i in s.extra if i >= s.durable), s.torn)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    if len(unique) > max_states:
        keep = sorted(rng.sample(range(len(unique)), max_states))
        return [unique[i] for i in keep], len(unique)
    return unique, len(unique)
