"""Struct parsers derived from construct declarations equal construct's own parse, field by
field, interpreted and compiled; what cannot be derived is refused at derivation time."""

from __future__ import annotations

import dataclasses
import os

import pytest
from construct import Array, Bytes, Int8ub, Int16ub, Int16ul, Struct, this
from hypothesis import given, settings
from hypothesis import strategies as st

from fsproto.formats.cms import layout as cms_layout
from fsproto.formats.cms.directory import Fst
from fsproto.formats.fat import layout as fat_layout
from fsproto.formats.structview import struct_view

DECLS = {
    "FST": cms_layout.FST,
    "V_POINTER": cms_layout.V_POINTER,
    "EDF_DATE": cms_layout.EDF_DATE,
    "DIR_ENTRY": fat_layout.DIR_ENTRY,
    "LFN_ENTRY": fat_layout.LFN_ENTRY,
}


@pytest.fixture(params=["interpreted", "compiled"])
def compiled(request: pytest.FixtureRequest) -> bool:
    return request.param == "compiled"


@pytest.mark.parametrize("name", DECLS)
@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=64, max_size=64))
def test_derived_parser_equals_construct(name: str, seed: bytes) -> None:
    decl = DECLS[name]
    view = struct_view(decl)
    raw = seed[: view.size]
    for con in (decl, decl.compile()):
        obj = con.parse(raw)
        assert view.struct.unpack(raw) == tuple(obj[n] for n in view.names)
    assert view.struct.pack(*view.struct.unpack(raw)) == decl.build(decl.parse(raw)) == raw


def test_const_fields_derive_and_match_on_valid_bytes(compiled: bool) -> None:
    # The label's Const magic and the FSInfo Const signatures become plain fields of their size.
    label = bytes.fromhex("c3d4e2f1d7e4c2f5f1f200000000020000000004000000000000000000002000000009250000004000"
                          "000008240315110000010000000000000000000000000000000000000000000000000000000000")
    for decl, raw in ((cms_layout.ADT, label),
                      (fat_layout.FSINFO, fat_layout.FSINFO.build(dict(FSI_Reserved1=bytes(480), FSI_Free_Count=7,
                                                                       FSI_Nxt_Free=9, FSI_Reserved2=bytes(12))))):
        view = struct_view(decl)
        con = decl.compile() if compiled else decl
        obj = con.parse(raw)
        assert view.struct.unpack(raw) == tuple(obj[n] for n in view.names)


def test_fst_record_fields_are_the_declaration_fields() -> None:
    # Fst(*unpack) relies on the dataclass listing the declaration's fields in its order.
    assert tuple(f.name for f in dataclasses.fields(Fst)) == cms_layout.FST_VIEW.names
    assert cms_layout.FST_VIEW.format == ">8s8s8s2s4s1sBL4sLLLBB6s4s"
    assert fat_layout.DIR_ENTRY_VIEW.format == "<11sBBBHHHHHHHL"


def test_directory_block_scan_equals_per_fst_parse() -> None:
    block = os.urandom(4096)
    scanned = [Fst(*t) for t in cms_layout.FST_STRUCT.iter_unpack(block)]
    one_by_one = [Fst.from_bytes(block, off) for off in range(0, 4096, 64)]
    parsed = cms_layout.fst_block(4096).parse(block).fsts
    assert scanned == one_by_one
    assert [tuple(f[n] for n in cms_layout.FST_VIEW.names) for f in parsed] == [dataclasses.astuple(f) for f in scanned]


@pytest.mark.parametrize("decl", [
    Struct("a" / Int16ub, "b" / Int16ul),  # mixed byte order
    Struct("n" / Int8ub, "data" / Bytes(this.n)),  # size from another field
    Struct("a" / Array(4, Int8ub)),  # nesting
    Struct(Int8ub),  # unnamed field
], ids=["mixed-order", "variable", "array", "unnamed"])
def test_underivable_declarations_are_refused(decl: Struct) -> None:
    with pytest.raises(TypeError):
        struct_view(decl)
