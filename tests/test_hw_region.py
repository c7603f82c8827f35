"""Region: exact widths, alignment, bounds, read-only, byte order, split 64-bit, dry-run, lifetime.

Real anonymous memory and real file mappings; the fake backend's access log proves each rN/wN
is exactly one access of exactly that width (the qtest tests prove the same on QEMU's bus).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.errors import AccessDenied, AlignmentError, HardwareError, HardwareNotFound, RegionOutOfRange, UsageError
from fsproto.hw import mmap
from fsproto.hw.backends import FakeBackend, MappedBackend
from fsproto.hw.backends.fake import Access
from fsproto.hw.region import Region

WIDTHS = (8, 16, 32, 64)


@pytest.fixture
def anon():
    with mmap(None, 4096, writable=True) as region:
        yield region


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "window.bin"
    path.write_bytes(bytes(range(256)) * 32)  # 8 KiB, known pattern
    return path


@pytest.mark.parametrize("bits", WIDTHS)
def test_roundtrip_every_width_on_anonymous_memory(anon, bits):
    top = (1 << bits) - 1
    for offset in (0, bits // 8, 4096 - bits // 8):
        anon.poke(offset, top ^ 0x5A, bits)
        assert anon.peek(offset, bits) == top ^ 0x5A


def test_little_endian_layout_matches_bytes(anon):
    anon.w32(8, 0x11223344)
    assert anon.read(8, 4) == bytes.fromhex("44332211")
    assert anon.r8(8) == 0x44 and anon.r16(10) == 0x1122
    anon.w64(16, 0x0102030405060708)
    assert anon.r32(16) == 0x05060708 and anon.r32(20) == 0x01020304


def test_big_endian_window_swaps_values_not_layout(anon):
    be = anon.sub(0, 64, big_endian=True)
    be.w32(0, 0x11223344)
    assert anon.read(0, 4) == bytes.fromhex("11223344")
    assert be.r32(0) == 0x11223344
    be.w64(8, 0x0102030405060708)
    assert anon.read(8, 8) == bytes(range(1, 9))
    assert be.r16(8) == 0x0102


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_misaligned_access_is_refused_not_split(anon, bits):
    anon.fill(0, 64, 0xEE)
    with pytest.raises(AlignmentError) as e:
        anon.poke(1, 0, bits)
    assert "aligned" in str(e.value) and e.value.offset == 1
    with pytest.raises(AlignmentError):
        anon.peek(bits // 8 + 1, bits)
    assert anon.read(0, 64) == b"\xee" * 64  # nothing was written


@pytest.mark.parametrize("bits", WIDTHS)
def test_out_of_range_is_refused(anon, bits):
    for offset in (-(bits // 8), 4096, 4096 - bits // 8 + 1):
        with pytest.raises(RegionOutOfRange) as e:
            anon.peek(offset, bits)
        assert e.value.offset == offset


def test_bad_values_and_offsets_are_usage_errors(anon):
    with pytest.raises(UsageError):
        anon.w8(0, 256)
    with pytest.raises(UsageError):
        anon.w32(0, -1)
    with pytest.raises(UsageError):
        anon.w16(0, "1")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        anon.r32("0")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        anon.peek(0, 24)


def test_file_mapping_is_read_only_unless_asked(image):
    with mmap(str(image)) as ro:
        assert ro.r32(4) == 0x07060504
        with pytest.raises(AccessDenied):
            ro.w32(4, 0)
        with pytest.raises(AccessDenied):
            ro.write(0, b"x")
        with pytest.raises(AccessDenied):
            ro.sub(0, 16, writable=True)
    with mmap(str(image), writable=True) as rw:
        rw.w16(0x102, 0xBEEF)
    assert image.read_bytes()[0x102:0x104] == b"\xef\xbe"


def test_file_window_at_offset_and_past_end(image):
    with mmap(str(image), 16, 4096 + 8) as r:  # not page aligned: mapped from the page, windowed
        assert r.size == 16 and r.r8(0) == 8
    with pytest.raises(RegionOutOfRange):
        mmap(str(image), 16, 8192 - 8)
    with pytest.raises(AlignmentError):
        mmap(str(image), 16, 4)
    with pytest.raises(HardwareNotFound):
        mmap(str(image) + ".missing")
    with pytest.raises(UsageError):
        mmap(os.path.dirname(image))


def test_empty_file_cannot_be_mapped(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(HardwareError):
        mmap(str(tmp_path / "empty"))


def test_dry_run_logs_and_never_writes(image):
    before = image.read_bytes()
    with mmap(str(image), writable=True, dry_run=True) as r:
        r.w32(0, 0xDEADBEEF)
        r.w8(3, 1)
        r.write(16, b"zz")
        r.fill(32, 4, 0xFF)
        assert r.r32(0) == 0x03020100  # reads are real
        assert [(e.offset, e.width, e.value) for e in r.log[:2]] == [(0, 4, 0xDEADBEEF), (3, 1, 1)]
        assert len(r.log) == 4 and "dry-run" in str(r.log[0])
        with pytest.raises(AlignmentError):  # bad input is still refused in a dry run
            r.w32(2, 0)
    assert image.read_bytes() == before


def test_split64_and_explicit_orders_use_two_32_bit_accesses():
    fake = FakeBackend(64)
    r = Region(fake, split64=True)
    r.w64(8, 0x1122334455667788)
    assert fake.accesses == [Access("w", 8, 4, 0x55667788), Access("w", 12, 4, 0x11223344)]
    fake.accesses.clear()
    assert r.r64(8) == 0x1122334455667788
    assert [(a.op, a.offset, a.width) for a in fake.accesses] == [("r", 8, 4), ("r", 12, 4)]
    fake.accesses.clear()
    r.w64_hl(16, 0xAABBCCDD00000001)
    assert [(a.offset, a.value) for a in fake.accesses] == [(20, 0xAABBCCDD), (16, 1)]
    with pytest.raises(AlignmentError):  # checked as one access: no half-done store
        r.w64_lh(4, 1)
    assert len(fake.accesses) == 2


@pytest.mark.parametrize("bits", WIDTHS)
def test_each_access_is_exactly_one_of_that_width(bits):
    fake = FakeBackend(64)
    r = Region(fake)
    r.poke(8, 1, bits)
    r.peek(8, bits)
    assert [(a.op, a.offset, a.width) for a in fake.accesses] == [("w", 8, bits // 8), ("r", 8, bits // 8)]


def test_closed_region_raises_typed_error_not_segfault(tmp_path):
    r = mmap(None, 4096, writable=True)
    r32, sub = r.r32, r.sub(0, 64)
    r.close()
    r.close()  # idempotent
    for call in (lambda: r.r32(0), lambda: r32(0), lambda: sub.w8(0, 1), lambda: r.read(0, 4), lambda: r.sub(0, 8)):
        with pytest.raises(HardwareError, match="closed"):
            call()
    assert "closed" in str(r)


def test_hexdump_and_str(anon):
    anon.write(0, b"fsproto!")
    dump = anon.hexdump(0, 32)
    assert dump.splitlines()[0].startswith("00000000: 6673 7072 6f74 6f21") and "fsproto!" in dump
    assert len(dump.splitlines()) == 2
    assert "anonymous" in str(anon) and "rw" in str(anon)


def test_window_must_fit_its_backend():
    backend = MappedBackend(size=4096, writable=True)
    try:
        with pytest.raises(RegionOutOfRange):
            Region(backend, offset=4000, size=200)
        with pytest.raises(AccessDenied):
            Region(FakeBackend(16, writable=False), writable=True)
    finally:
        backend.close()


_ops = st.lists(
    st.tuples(st.sampled_from(WIDTHS), st.integers(0, 255), st.integers(0, (1 << 64) - 1), st.booleans()),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_random_accesses_match_a_bytearray_model(ops):
    model = bytearray(256)
    with mmap(None, 256, writable=True) as r:
        for bits, offset, value, is_write in ops:
            width = bits // 8
            value &= (1 << bits) - 1
            ok = offset % width == 0 and offset + width <= 256
            if not ok:
                with pytest.raises((AlignmentError, RegionOutOfRange)):
                    r.poke(offset, value, bits) if is_write else r.peek(offset, bits)
                continue
            if is_write:
                r.poke(offset, value, bits)
                model[offset : offset + width] = value.to_bytes(width, "little")
            else:
                assert r.peek(offset, bits) == int.from_bytes(model[offset : offset + width], "little")
        assert r.read(0, 256) == bytes(model)
