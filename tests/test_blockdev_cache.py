"""VolatileCacheDevice: read-your-writes, flush ordering, crash keeps an arbitrary subset of blocks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.rawdev import MemoryDevice, VolatileCacheDevice

BS = 512
N = 16

op = st.one_of(
    st.tuples(st.just("write"), st.integers(0, N - 1), st.integers(1, 3), st.integers(1, 255)),
    st.tuples(st.just("flush"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=20), keep_bits=st.integers(0, (1 << N) - 1))
def test_crash_lands_flushed_state_plus_exactly_the_kept_blocks(ops, keep_bits):
    disk = MemoryDevice(N, BS)
    dev = VolatileCacheDevice(disk, owns_inner=False)
    durable = bytearray(N * BS)  # what flushes made durable
    visible = bytearray(N * BS)  # what the caller sees
    for kind, lba, n, v in ops:
        if kind == "flush":
            dev.flush()
            durable[:] = visible
            assert disk.snapshot() == bytes(durable)
            continue
        n = min(n, N - lba)
        dev.write(lba, bytes([v]) * n * BS)
        visible[lba * BS : (lba + n) * BS] = bytes([v]) * n * BS
        assert dev.read(0, N) == bytes(visible)  # read-your-writes
    assert disk.snapshot() == bytes(durable)  # nothing unflushed has landed
    landed = dev.crash(lambda index, lba: bool(keep_bits >> lba & 1))
    expected = bytearray(durable)
    for lba in range(N):
        if visible[lba * BS : (lba + 1) * BS] != durable[lba * BS : (lba + 1) * BS] and keep_bits >> lba & 1:
            expected[lba * BS : (lba + 1) * BS] = visible[lba * BS : (lba + 1) * BS]
    assert disk.snapshot() == bytes(expected)
    assert set(landed) <= {lba for lba in range(N) if keep_bits >> lba & 1}
    assert dev.cached_blocks == 0 and dev.read(0, N) == bytes(expected)


def test_seeded_crash_is_reproducible_and_default_loses_everything():
    states = []
    for _ in range(2):
        disk = MemoryDevice(64, BS)
        dev = VolatileCacheDevice(disk, owns_inner=False)
        for lba in range(64):
            dev.write(lba, bytes([lba + 1]) * BS)
        dev.crash(seed=42)
        states.append(disk.snapshot())
    assert states[0] == states[1]
    assert 0 < sum(1 for i in range(64) if states[0][i * BS]) < 64
    disk = MemoryDevice(4, BS)
    dev = VolatileCacheDevice(disk, owns_inner=False)
    dev.write(0, b"\x01" * BS)
    assert dev.crash() == [] and disk.snapshot() == bytes(4 * BS)


def test_full_cache_writes_back_oldest_first_and_close_flushes():
    disk = MemoryDevice(8, BS)
    dev = VolatileCacheDevice(disk, max_cached_bytes=2 * BS, owns_inner=False)
    for lba in range(4):
        dev.write(lba, bytes([lba + 1]) * BS)
    assert dev.cached_blocks == 2
    assert [disk.read(i)[0] for i in range(4)] == [1, 2, 0, 0]
    dev.write(0, b"\x09" * BS)  # rewriting an evicted block caches it again
    dev.close()
    assert [disk.read(i)[0] for i in range(4)] == [9, 2, 3, 4]


def test_rewriting_a_cached_block_makes_it_the_youngest():
    disk = MemoryDevice(4, BS)
    dev = VolatileCacheDevice(disk, max_cached_bytes=2 * BS, owns_inner=False)
    dev.write(0, b"\x01" * BS)
    dev.write(1, b"\x02" * BS)
    dev.write(0, b"\x03" * BS)  # block 0 is now younger than block 1
    dev.write(2, b"\x04" * BS)  # evicts the oldest: block 1
    assert [disk.read(i)[0] for i in range(3)] == [0, 2, 0]
