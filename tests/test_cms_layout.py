"""CMS structs: sizes, round trips, the struct fast path equal to the construct declaration
(interpreted and compiled), the levels rule, BCD dates and the cp1047 code page."""

from __future__ import annotations

import struct
import time

import pytest
from construct import ConstructError
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.formats.cms import layout
from fsproto.formats.cms.codepage import CP1047_DIFFERENCES, check_codepage
from fsproto.formats.cms.directory import Fst, parse_name
from fsproto.formats.cms.pointers import levels_for
from fsproto.formats.cms.volume import decode_date, encode_date
from fsproto.errors import InvalidName, NameTooLong, UsageError


@pytest.fixture(params=["interpreted", "compiled"])
def compiled(request) -> bool:
    return request.param == "compiled"


def common(s, data: bytes, size: int) -> object:
    """Parse, build back, sizeof: the construct test-suite idiom."""
    obj = s.parse(data)
    assert s.build(obj) == data
    assert s.sizeof() == size
    return obj


def test_sizes() -> None:
    assert layout.ADT.sizeof() == 80
    assert layout.FST.sizeof() == 64
    assert layout.V_POINTER.sizeof() == 12
    assert layout.EDF_DATE.sizeof() == 6
    for bs in layout.BLOCK_SIZES:
        assert layout.f_pointer_block(bs).sizeof() == bs
        assert layout.v_pointer_block(bs).sizeof() == bs
        assert layout.fst_block(bs).sizeof() == bs
    assert [layout.v_pointers_per_block(b) for b in layout.BLOCK_SIZES] == [42, 85, 170, 341]


fst_bytes = st.binary(min_size=64, max_size=64)


@settings(max_examples=200, deadline=None)
@given(raw=fst_bytes)
def test_fst_fast_path_equals_declaration(raw: bytes) -> None:
    for s in (layout.FST, layout.FST.compile()):
        obj = common(s, raw, 64)
        fast = Fst.from_bytes(raw)
        for name in ("fname", "ftype", "reserved_16", "fmode", "reserved_26", "recfm", "flag", "lrecl",
                     "reserved_36", "fop", "data_blocks", "records", "levels", "ptr_size", "date", "reserved_60"):
            assert getattr(fast, name) == obj[name], name
        assert fast.to_bytes() == raw


def test_adt_round_trip_and_const(compiled: bool) -> None:
    # The label of the shared edf512-mixed image (PUB512, 8192 blocks of 512, 2341 used).
    raw = bytes.fromhex("c3d4e2f1d7e4c2f5f1f200000000020000000004000000000000000000002000000009250000004000"
                        "000008240315110000010000000000000000000000000000000000000000000000000000000000")
    s = layout.ADT.compile() if compiled else layout.ADT
    obj = common(s, raw, 80)
    assert obj.ADTDBSIZ == 512 and obj.ADTNUM == 8192 and obj.ADTUSED == 2341 and obj.ADTNFST == 8
    if not compiled:  # compiled parsers skip Const checks (construct docs/compilation.rst)
        with pytest.raises(ConstructError):
            layout.ADT.parse(b"XXXX" + raw[4:])


@pytest.mark.parametrize("bs", layout.BLOCK_SIZES)
def test_pointer_blocks_round_trip(bs: int, compiled: bool) -> None:
    n = layout.v_pointers_per_block(bs)
    vals = []
    for i in range(n):
        vals += [1000 + i, i + 1, (i * 7) % bs]
    raw = struct.pack(f">{3 * n}I", *vals) + bytes(bs - 4 - 12 * n) + struct.pack(">I", (n - 1) * 12)
    s = layout.v_pointer_block(bs)
    obj = common(s.compile() if compiled else s, raw, bs)
    assert obj.entries[3].next == 1003 and obj.last_entry_offset == (n - 1) * 12
    f = struct.pack(f">{bs // 4}I", *range(bs // 4))
    s = layout.f_pointer_block(bs)
    assert list(common(s.compile() if compiled else s, f, bs).entries) == list(range(bs // 4))


def test_levels_rule_matches_the_reference_fixtures() -> None:
    # From the shared images: 42, 42*42 (V at 512), 85 (V at 1024), 128 (F at 512) get one more level.
    assert levels_for(0, 42) == 0 and levels_for(1, 42) == 0
    assert levels_for(2, 42) == 1 and levels_for(41, 42) == 1
    assert levels_for(42, 42) == 2 and levels_for(42 * 42 - 1, 42) == 2 and levels_for(42 * 42, 42) == 3
    assert levels_for(1800, 42) == 3
    assert levels_for(85, 85) == 2 and levels_for(128, 128) == 2 and levels_for(195, 128) == 2


def test_bcd_dates_round_trip() -> None:
    t = time.mktime((2023, 6, 7, 14, 2, 2, 0, 0, -1))
    raw, century = encode_date(t)
    assert raw == bytes.fromhex("230607140202") and century
    assert decode_date(raw, century) == (2023, 6, 7, 14, 2, 2)
    assert decode_date(bytes.fromhex("991231235958"), False) == (1999, 12, 31, 23, 59, 58)
    assert layout.EDF_DATE.parse(raw).mm == 0x06
    with pytest.raises(ValueError):
        decode_date(bytes.fromhex("2306071402FA"), True)


def test_cp1047_table_facts() -> None:
    # The eight bytes where IBM-1047 differs from cp037 (shared/specs/fuse.md).
    assert sorted(CP1047_DIFFERENCES) == [0x5F, 0xAD, 0xB0, 0xBA, 0xBB, 0xBD]
    assert "[]^¬".encode("cp1047") == bytes([0xAD, 0xBD, 0x5F, 0xB0])
    assert "[]^¬".encode("cp037") == bytes([0xBA, 0xBB, 0xB0, 0x5F])
    assert b"\x15".decode("cp1047") == "\x85" and b"\x25".decode("cp1047") == "\n"  # as the reference
    for b in range(256):
        if b not in CP1047_DIFFERENCES:
            assert bytes([b]).decode("cp1047") == bytes([b]).decode("cp037")
    every = bytes(range(256))
    assert every.decode("cp1047").encode("cp1047") == every
    assert "HELLO world 0123".encode("cp1047") == bytes.fromhex("c8c5d3d3d640a696999384 40f0f1f2f3".replace(" ", ""))
    assert check_codepage("IBM-1047") == "cp1047" and check_codepage("cp037") == "cp037"
    with pytest.raises(UsageError):
        check_codepage("utf-8")


def test_names() -> None:
    assert parse_name("profile.exec") == ("PROFILE ".encode("cp1047"), "EXEC    ".encode("cp1047"))
    assert parse_name("ONE$BYTE.DAT#")[0] == "ONE$BYTE".encode("cp1047")
    for bad in ("NODOT", "A.B.C", ".X", "X.", "SP CE.X", "É.X", "A*.B"):
        with pytest.raises(InvalidName):
            parse_name(bad)
    with pytest.raises(NameTooLong):
        parse_name("NINECHARS.X")
    with pytest.raises(NameTooLong):
        parse_name("X.NINECHARS")
