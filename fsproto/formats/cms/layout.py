"""CMS EDF on-disk structures, declared with construct (declarations and constants only).

Source for every struct: ``shared/specs/cms-edf.md`` (IBM's ADT field names for the label; the
spec's FST field layout, checked against cmsfs-fuse 2.16.0 images). All integers are big-endian.

The hot paths (directory scans over thousands of FSTs, pointer blocks of big files) read through
``struct`` fast paths: the FST's is derived from its construct declaration
(:mod:`fsproto.formats.structview`), so the declaration stays the one source of the layout;
``tests/test_cms_layout.py`` proves each fast path equals its declaration, interpreted and compiled.
"""

from __future__ import annotations

import struct

from construct import Array, Bytes, Const, Int8ub, Int16ub, Int32ub, Struct

from fsproto.formats.structview import struct_view

BLOCK_SIZES = (512, 1024, 2048, 4096)
CMS1 = b"\xc3\xd4\xe2\xf1"  # "CMS1" in EBCDIC
FST_SIZE = 64
EBCDIC_BLANK = 0x40
NO_HEADER = 0xFFFFFFFF  # V pointer disp: no record header starts in this block
MAX_V_RECORD = 65535
RECFM_F = b"\xc6"  # EBCDIC "F"
RECFM_V = b"\xe5"  # EBCDIC "V"
FLAG_CENTURY = 0x08  # FST flag: the date's year is 20YY
ADTFLGL_CENTURY = 0x01  # label flag: the creation year is 20YY [open in the spec]
DIRECTOR_NAME = b"\x00\x00\x00\x01\x00\x00\x00\x00"
ALLOCMAP_NAME = b"\x00\x00\x00\x02\x00\x00\x00\x00"
DIRECTOR_TYPE = b"\xc4\xc9\xd9\xc5\xc3\xe3\xd6\xd9"  # "DIRECTOR"
ALLOCMAP_TYPE = b"\xc1\xd3\xd3\xd6\xc3\xd4\xc1\xd7"  # "ALLOCMAP"
FREE_NAME = b"\x00" * 8
# Reserved FST byte fsproto sets while a rename-over is in flight (see namespace.py); 0 otherwise.
REPLACE_MARK = 0x01

# The volume label (ADT), 80 bytes, at byte 2 x blocksize (CKD) or 512 (FBA).
ADT = Struct(
    "ADTIDENT" / Const(CMS1),
    "ADTID" / Bytes(6),  # volser, EBCDIC, blank padded
    "ADTVER" / Int16ub,
    "ADTDBSIZ" / Int32ub,  # block size
    "ADTDOP" / Int32ub,  # directory origin: first directory data block
    "ADTCYL" / Int32ub,
    "ADTMCYL" / Int32ub,
    "ADTNUM" / Int32ub,  # total blocks
    "ADTUSED" / Int32ub,  # blocks in use
    "ADTFSTSZ" / Int32ub,  # 64
    "ADTNFST" / Int32ub,  # FSTs per block
    "ADTCRED" / Bytes(6),  # creation date, BCD YYMMDDHHMMSS
    "ADTFLGL" / Int8ub,
    "reserved_51" / Bytes(1),
    "ADTOFFST" / Int32ub,
    "ADTAMNB" / Int32ub,  # allocation hints: never trusted, never written
    "ADTAMND" / Int32ub,
    "ADTAMUP" / Int32ub,
    "ADTOFCNT" / Int32ub,
    "ADTSFNAM" / Bytes(8),
)
assert ADT.sizeof() == 80
# Where ADTUSED lies in the label: fs writes patch just these 4 bytes (once per data write).
ADTUSED_OFFSET = sum(sc.sizeof() for sc in ADT.subcons[: [sc.name for sc in ADT.subcons].index("ADTUSED")])
assert ADTUSED_OFFSET == 32

# The FST (file status table entry), 64 bytes; the directory is an F 64 file of them.
FST = Struct(
    "fname" / Bytes(8),
    "ftype" / Bytes(8),
    "reserved_16" / Bytes(8),
    "fmode" / Bytes(2),  # EBCDIC letter + digit, e.g. "A1"
    "reserved_26" / Bytes(4),
    "recfm" / Bytes(1),  # 0xC6 F or 0xE5 V
    "flag" / Int8ub,  # 0x08: date in the 2000s
    "lrecl" / Int32ub,
    "reserved_36" / Bytes(4),
    "fop" / Int32ub,  # file origin pointer: data block (levels 0) or top pointer block
    "data_blocks" / Int32ub,  # not counting pointer blocks
    "records" / Int32ub,
    "levels" / Int8ub,
    "ptr_size" / Int8ub,  # 4 (F) or 12 (V)
    "date" / Bytes(6),  # BCD YYMMDDHHMMSS, local time
    "reserved_60" / Bytes(4),
)
assert FST.sizeof() == FST_SIZE

# Fast path for FST, derived from the declaration above (directory scans unpack whole blocks).
FST_VIEW = struct_view(FST)
FST_STRUCT = FST_VIEW.struct
assert FST_STRUCT.size == FST_SIZE

# EDF date: six BCD bytes YY MM DD HH MM SS.
EDF_DATE = Struct("yy" / Int8ub, "mm" / Int8ub, "dd" / Int8ub, "hh" / Int8ub, "mi" / Int8ub, "ss" / Int8ub)
assert EDF_DATE.sizeof() == 6

# A V pointer entry, 12 bytes.
V_POINTER = Struct("next" / Int32ub, "hi_record" / Int32ub, "disp" / Int32ub)
assert V_POINTER.sizeof() == 12


def f_pointers_per_block(block_size: int) -> int:
    return block_size // 4


def v_pointers_per_block(block_size: int) -> int:
    # 42/85/170/341 entries; the last 4 bytes always stay free for the trailer.
    return (block_size - 4) // 12


def f_pointer_block(block_size: int) -> Struct:
    """An F pointer block: ``blocksize / 4`` block numbers (0 = null block)."""
    s = Struct("entries" / Array(f_pointers_per_block(block_size), Int32ub))
    assert s.sizeof() == block_size
    return s


def v_pointer_block(block_size: int) -> Struct:
    """A V pointer block: entries, zero fill, and the offset of the last used entry in the last 4 bytes."""
    n = v_pointers_per_block(block_size)
    s = Struct(
        "entries" / Array(n, V_POINTER),
        "reserved" / Bytes(block_size - 4 - 12 * n),
        "last_entry_offset" / Int32ub,
    )
    assert s.sizeof() == block_size
    return s


def fst_block(block_size: int) -> Struct:
    """One directory block: ``blocksize / 64`` FSTs."""
    s = Struct("fsts" / Array(block_size // FST_SIZE, FST))
    assert s.sizeof() == block_size
    return s
