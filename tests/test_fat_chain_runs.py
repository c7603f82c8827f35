"""FatTable.chain's run-at-a-time walk (and files.runs) give what a link-by-link walk gives, and
fail where it fails (loops, free or bad links, links off the disk), on random FATs."""

from __future__ import annotations

import random

import pytest

from fsproto.errors import FormatError
from fsproto.formats.fat import FORMAT
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.files import runs
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import MemoryDevice


def _reference(table: FatTable, start: int, limit: int | None) -> list[int] | str:
    """The chain, or the text the error must contain."""
    out, seen, c = [start], {start}, start
    bound = table.max_cluster if limit is None else min(limit, table.max_cluster)
    while len(out) < bound:
        nxt = table.get(c)
        if nxt >= table.eoc_min:
            return out
        if nxt < 2 or nxt > table.max_cluster or nxt == table.bad or nxt in seen:
            return f"cluster {c} "  # the link-by-link walk names the cluster whose link is bad
        seen.add(nxt)
        out.append(nxt)
        c = nxt
    return out


@pytest.fixture(scope="module")
def table() -> FatTable:
    dev = MemoryDevice((40 << 20) // 512)
    FORMAT.mkfs(dev, fat=32)
    return FatTable(Volume(dev))


def test_chain_equals_link_by_link_walk(table: FatTable) -> None:
    rnd = random.Random(19)
    n = table.max_cluster
    for trial in range(300):
        table.entries[2 : n + 1] = type(table.entries)(table.entries.typecode, bytes(4 * (n - 1)))
        start = rnd.randrange(2, n - 3000)
        c, length = start, rnd.randrange(1, 2000)
        walked = [start]
        for _ in range(length):  # mostly contiguous, with jumps, and a bad ending now and then
            nxt = c + 1 if rnd.random() < 0.93 and c < n else rnd.randrange(2, n + 1)
            if rnd.random() < 0.01:  # jump back before a stretch already walked: a loop into a run
                nxt = max(2, rnd.choice(walked) - rnd.randrange(0, 50))
            table.entries[c] = nxt
            c = nxt
            walked.append(c)
        table.entries[c] = rnd.choice([table.eoc, table.eoc, 0, table.bad, start, n + 5 if n + 5 < 2**28 else 0])
        limit = rnd.choice([None, rnd.randrange(1, 3000)])
        want = _reference(table, start, limit)
        if isinstance(want, str):
            with pytest.raises(FormatError, match=want):
                table.chain(start, limit=limit)
        else:
            got = table.chain(start, limit=limit)
            assert got == want, trial
            lo = rnd.randrange(len(got))
            hi = rnd.randrange(lo, len(got))
            flat = [c for _, first, count in runs(got, lo, hi) for c in range(first, first + count)]
            assert flat == got[lo : hi + 1]


def test_a_loop_back_into_a_run_is_named_where_it_closes(table: FatTable) -> None:
    n = table.max_cluster
    table.entries[2 : n + 1] = type(table.entries)(table.entries.typecode, bytes(4 * (n - 1)))
    for c in range(1000, 1200):  # 1000..1200, then back to 900, which runs on into 1000 again
        table.entries[c] = c + 1
    table.entries[1200] = 900
    for c in range(900, 1000):
        table.entries[c] = c + 1
    with pytest.raises(FormatError, match="cluster 999 links back to 1000"):
        table.chain(1000)
