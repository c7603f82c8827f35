"""FaultInjectingDevice semantics, property-tested against a plain bytearray model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.errors import MediaError, ReadOnlyError, UsageError
from fsproto.rawdev import FaultInjectingDevice, MemoryDevice

BS = 512
NBLOCKS = 16


def pattern(seed: int, nblocks: int) -> bytes:
    """Distinct, non-zero bytes per write so a landed block is never mistaken for an old one."""
    return bytes(((seed * 131 + i) % 251) + 1 for i in range(nblocks * BS))


writes_strategy = st.lists(
    st.tuples(st.integers(0, NBLOCKS - 1), st.integers(1, 4)).map(lambda t: (t[0], min(t[1], NBLOCKS - t[0]))),
    min_size=0,
    max_size=12,
)


def apply(model: bytearray, lba: int, data: bytes, keep: int | None = None) -> None:
    part = data if keep is None else data[:keep]
    model[lba * BS : lba * BS + len(part)] = part


@settings(max_examples=150, deadline=None)
@given(writes=writes_strategy, n=st.integers(0, 14))
def test_cut_after_writes_keeps_exactly_the_first_n(writes, n):
    mem = MemoryDevice(NBLOCKS, BS)
    dev = FaultInjectingDevice(mem, cut_after_writes=n)
    model = bytearray(NBLOCKS * BS)
    for i, (lba, cnt) in enumerate(writes):
        data = pattern(i, cnt)
        dev.write(lba, data)  # never raises: dropped writes vanish silently
        if i < n:
            apply(model, lba, data)
    assert mem.snapshot() == bytes(model)
    assert dev.writes_seen == len(writes)
    assert dev.blocks_seen == sum(c for _, c in writes)
    assert dev.power_cut == (len(writes) > n)
    assert dev.writes_dropped == max(0, len(writes) - n)
    # Reads show the media as it is: without the dropped writes.
    assert dev.read(0, NBLOCKS) == bytes(model)


@settings(max_examples=150, deadline=None)
@given(writes=writes_strategy, n=st.integers(0, 40))
def test_cut_after_blocks_lands_a_prefix_of_the_block_stream(writes, n):
    mem = MemoryDevice(NBLOCKS, BS)
    dev = FaultInjectingDevice(mem, cut_after_blocks=n)
    model = bytearray(NBLOCKS * BS)
    budget = n
    for i, (lba, cnt) in enumerate(writes):
        data = pattern(i, cnt)
        dev.write(lba, data)
        take = max(0, min(cnt, budget))
        apply(model, lba, data, take * BS)
        budget -= cnt
    assert mem.snapshot() == bytes(model)
    assert dev.power_cut == (sum(c for _, c in writes) > n)


@settings(max_examples=150, deadline=None)
@given(writes=writes_strategy.filter(lambda w: len(w) > 0), data=st.data())
def test_torn_write_at_the_cut_lands_only_its_first_bytes(writes, data):
    n = data.draw(st.integers(0, len(writes) - 1))
    torn = data.draw(st.integers(0, 4 * BS))
    mem = MemoryDevice(NBLOCKS, BS, data=bytes([0xEE]) * (NBLOCKS * BS))
    dev = FaultInjectingDevice(mem, cut_after_writes=n, torn_bytes=torn)
    model = bytearray([0xEE]) * (NBLOCKS * BS)
    for i, (lba, cnt) in enumerate(writes):
        buf = pattern(i, cnt)
        dev.write(lba, buf)
        if i < n:
            apply(model, lba, buf)
        elif i == n:
            apply(model, lba, buf, torn)  # may end inside a block: the block's tail stays old
    assert mem.snapshot() == bytes(model)


@settings(max_examples=100, deadline=None)
@given(writes=writes_strategy.filter(lambda w: len(w) > 0), data=st.data())
def test_tear_write_without_cut_keeps_the_device_going(writes, data):
    idx = data.draw(st.integers(0, len(writes) - 1))
    keep = data.draw(st.integers(0, 4 * BS))
    mem = MemoryDevice(NBLOCKS, BS)
    dev = FaultInjectingDevice(mem)
    dev.tear_write(idx, keep)
    model = bytearray(NBLOCKS * BS)
    for i, (lba, cnt) in enumerate(writes):
        buf = pattern(i, cnt)
        dev.write(lba, buf)
        apply(model, lba, buf, keep if i == idx else None)
    assert mem.snapshot() == bytes(model)
    assert not dev.power_cut


@settings(max_examples=150, deadline=None)
@given(bad=st.sets(st.integers(0, NBLOCKS - 1), max_size=4), lba=st.integers(0, NBLOCKS - 1), data=st.data())
def test_read_errors_hit_exactly_the_chosen_lbas(bad, lba, data):
    count = data.draw(st.integers(0, NBLOCKS - lba))
    mem = MemoryDevice(NBLOCKS, BS, data=pattern(7, NBLOCKS))
    dev = FaultInjectingDevice(mem, read_errors=bad)
    hits = sorted(b for b in bad if lba <= b < lba + count)
    if hits:
        with pytest.raises(MediaError) as ei:
            dev.read(lba, count)
        assert ei.value.lba == hits[0]
        assert "faulty:memory" in str(ei.value) and f"lba {hits[0]}" in str(ei.value)
    else:
        assert dev.read(lba, count) == pattern(7, NBLOCKS)[lba * BS : (lba + count) * BS]


def test_write_errors_raise_and_do_not_land():
    mem = MemoryDevice(4, BS)
    dev = FaultInjectingDevice(mem, write_errors=[2])
    with pytest.raises(MediaError) as ei:
        dev.write(1, b"\x01" * (2 * BS))
    assert ei.value.lba == 2
    assert mem.snapshot() == bytes(4 * BS)
    dev.heal(2)
    dev.write(1, b"\x01" * (2 * BS))
    assert mem.read(1, 2) == b"\x01" * (2 * BS)


def test_rearm_resets_counters_and_cut():
    mem = MemoryDevice(4, BS)
    dev = FaultInjectingDevice(mem, cut_after_writes=1)
    dev.write(0, b"\x01" * BS)
    dev.write(1, b"\x02" * BS)
    assert dev.power_cut and mem.read(1) == bytes(BS)
    dev.arm(cut_after_writes=2)
    assert (dev.writes_seen, dev.blocks_seen, dev.power_cut) == (0, 0, False)
    for i in range(3):
        dev.write(i, bytes([i + 3]) * BS)
    assert [mem.read(i)[0] for i in range(4)] == [3, 4, 0, 0]
    dev.disarm()
    dev.write(3, b"\x09" * BS)
    assert mem.read(3)[0] == 9


def test_after_cut_error_mode_raises_and_flush_is_dropped():
    class CountingFlush(MemoryDevice):
        flushes = 0

        def _flush(self) -> None:
            CountingFlush.flushes += 1

    mem = CountingFlush(4, BS)
    dev = FaultInjectingDevice(mem, cut_after_writes=1, after_cut="error")
    dev.write(0, b"\x01" * BS)
    dev.flush()
    assert CountingFlush.flushes == 1
    with pytest.raises(MediaError, match="power cut"):
        dev.write(1, b"\x01" * BS)
    dev.flush()
    assert CountingFlush.flushes == 1
    assert dev.writes_seen == 2 and dev.writes_dropped == 1 and dev.flushes_seen == 2


def test_refused_writes_are_not_counted():
    dev = FaultInjectingDevice(MemoryDevice(4, BS, read_only=True), cut_after_writes=0)
    with pytest.raises(ReadOnlyError):
        dev.write(0, bytes(BS))
    assert dev.writes_seen == 0 and dev.read_only


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cut_after_writes": 1, "cut_after_blocks": 1},
        {"cut_after_writes": -1},
        {"torn_bytes": 5},
        {"after_cut": "explode"},
    ],
)
def test_contradictory_triggers_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        FaultInjectingDevice(MemoryDevice(1, BS), **kwargs)


def test_crash_loop_pattern_on_clones():
    """The loop crash tests run: one clone of a prepared disk per cut point."""
    base = MemoryDevice(8, BS)
    base.write(0, b"\xaa" * BS)

    def workload(dev):
        for i in range(1, 4):
            dev.write(i, bytes([i]) * BS)

    states = []
    for n in range(4):
        disk = base.clone()
        workload(FaultInjectingDevice(disk, cut_after_writes=n, owns_inner=False))
        states.append([disk.read(i)[0] for i in range(4)])
    assert states == [[0xAA, 0, 0, 0], [0xAA, 1, 0, 0], [0xAA, 1, 2, 0], [0xAA, 1, 2, 3]]
    assert base.read(1) == bytes(BS)  # clones never touch the original
