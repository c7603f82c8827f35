"""FSTs and the directory: decoding, names, and the in-memory slot table with a name index.

References: shared/specs/cms-edf.md "The FST", "The directory and the allocation map", "What
the reference shows and accepts" (names). The directory is an F 64 file whose record 1 is its
own FST (DIRECTOR) and record 2 the allocation map's (ALLOCMAP); its size comes from the
DIRECTOR record count and its tree, never from the DIRECTOR data-block count (the reference
leaves that stale).

States an interrupted fsproto writer can leave (see namespace.py), which readers accept:
a free slot inside the record count (skipped), the last slot an exact copy of an earlier one
(an interrupted delete-move: ignored), two FSTs of one name where one carries the replace mark
(an interrupted rename-over: the marked one wins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fsproto.errors import FormatError, InvalidName, NameTooLong
from fsproto.formats.cms.layout import (
    ALLOCMAP_NAME,
    ALLOCMAP_TYPE,
    DIRECTOR_NAME,
    DIRECTOR_TYPE,
    FLAG_CENTURY,
    FREE_NAME,
    FST_SIZE,
    FST_STRUCT,
    RECFM_F,
    RECFM_V,
    REPLACE_MARK,
)
from fsproto.formats.cms.pointers import Tree, read_tree
from fsproto.formats.cms.volume import Volume

_NAME_RE = re.compile(r"[A-Z0-9#@+$\-:_]{1,8}")
_MODE_RE = re.compile(r"[A-Z][0-6]")


@dataclass
class Fst:
    """One decoded FST (mutable; :meth:`to_bytes` rebuilds the 64 bytes)."""

    fname: bytes
    ftype: bytes
    reserved_16: bytes
    fmode: bytes
    reserved_26: bytes
    recfm: bytes
    flag: int
    lrecl: int
    reserved_36: bytes
    fop: int
    data_blocks: int
    records: int
    levels: int
    ptr_size: int
    date: bytes
    reserved_60: bytes

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview, offset: int = 0) -> "Fst":
        return cls(*FST_STRUCT.unpack_from(raw, offset))

    def to_bytes(self) -> bytes:
        return FST_STRUCT.pack(
            self.fname, self.ftype, self.reserved_16, self.fmode, self.reserved_26, self.recfm, self.flag,
            self.lrecl, self.reserved_36, self.fop, self.data_blocks, self.records, self.levels,
            self.ptr_size, self.date, self.reserved_60,
        )

    @property
    def key(self) -> tuple[bytes, bytes]:
        return self.fname, self.ftype

    @property
    def is_free(self) -> bool:
        return self.fname == FREE_NAME

    @property
    def recfm_char(self) -> str:
        return "F" if self.recfm == RECFM_F else "V" if self.recfm == RECFM_V else "?"

    @property
    def century(self) -> bool:
        return bool(self.flag & FLAG_CENTURY)

    @property
    def marked(self) -> bool:
        return self.reserved_60[0] == REPLACE_MARK

    def display_name(self) -> str:
        return f"{ebcdic_name(self.fname)}.{ebcdic_name(self.ftype)}"

    def mode_str(self) -> str:
        return _mode_str(self.fmode)


_MODE_STRS: dict[bytes, str] = {}


def _mode_str(fmode: bytes) -> str:
    """The file mode as text (non-printable bytes dropped); memoised: a disk has a few modes."""
    text = _MODE_STRS.get(fmode)
    if text is None:
        text = "".join(c for c in fmode.decode("cp1047") if c.isprintable()).strip()
        if len(_MODE_STRS) < 65536:  # two bytes: bounded anyway
            _MODE_STRS[fmode] = text
    return text


NAME_MAX = 17  # NAME.TYPE: 8 + 1 + 8 characters (statfs f_namemax)


def ebcdic_name(raw: bytes) -> str:
    return raw.decode("cp1047", "replace").rstrip(" ")


def check_part(part: str, what: str) -> bytes:
    """One name part -> 8 EBCDIC bytes. Raises InvalidName, NameTooLong."""
    up = part.upper()
    if len(up) > 8:
        raise NameTooLong(f"{what} {part!r} is longer than 8 characters")
    if not _NAME_RE.fullmatch(up):
        raise InvalidName(f"{what} {part!r}: CMS names are 1-8 of A-Z 0-9 # @ + $ - : _")
    return up.ljust(8).encode("cp1047")


def parse_name(name: str) -> tuple[bytes, bytes]:
    """``name.type`` -> (fname, ftype) as EBCDIC; lower case is upper-cased. Raises InvalidName, NameTooLong."""
    if len(name) > NAME_MAX:  # longer than any NAME.TYPE: too long (POSIX), whatever else is wrong
        raise NameTooLong(f"{name[:20]!r}... ({len(name)} characters) is longer than a CMS name (8.8)")
    if name.count(".") != 1:
        raise InvalidName(f"{name!r}: a CMS name has exactly one dot (NAME.TYPE)")
    fn, ft = name.split(".")
    return check_part(fn, "file name"), check_part(ft, "file type")


def parse_mode(mode: str) -> bytes:
    """``A1`` -> 2 EBCDIC bytes. Raises InvalidName."""
    up = mode.strip().upper()
    if not _MODE_RE.fullmatch(up):
        raise InvalidName(f"file mode {mode!r} is not a letter A-Z and a digit 0-6")
    return up.encode("cp1047")


def valid_stored_name(fst: Fst) -> bool:
    """Whether an on-disk FST name is one the reference can show."""
    try:
        fn, ft = ebcdic_name(fst.fname), ebcdic_name(fst.ftype)
    except Exception:  # pragma: no cover - cp1047 decodes every byte
        return False
    return bool(_NAME_RE.fullmatch(fn) and _NAME_RE.fullmatch(ft)) and fst.fname == fn.ljust(8).encode(
        "cp1047") and fst.ftype == ft.ljust(8).encode("cp1047")


class Directory:
    """The directory file in memory: its tree, its blocks' bytes, the FSTs and a name index."""

    def __init__(self, vol: Volume, *, strict: bool = True) -> None:
        """Load the directory. Raises FormatError; with ``strict=False`` two unmarked FSTs of one
        name are listed in :attr:`conflicts` (for fsck) instead.
        """
        self.vol = vol
        self.strict = strict
        self.conflicts: list[tuple[int, int]] = []
        bs = vol.block_size
        self.per_block = bs // FST_SIZE
        dop = vol.label.dop
        first = vol.read_block(dop)
        director = Fst.from_bytes(first, 0)
        if director.fname != DIRECTOR_NAME or director.ftype != DIRECTOR_TYPE:
            raise FormatError("slot 0 of the directory's first block is not the DIRECTOR FST",
                              device=vol.name, block=dop, offset=0, struct="FST")
        if director.recfm != RECFM_F or director.lrecl != FST_SIZE:
            raise FormatError("DIRECTOR FST is not F 64", device=vol.name, block=dop, offset=0, struct="FST")
        if director.records < 2:
            raise FormatError(f"DIRECTOR record count {director.records} < 2", device=vol.name, block=dop,
                              offset=48, struct="FST")
        nblocks = -(-director.records // self.per_block)
        self.tree: Tree = read_tree(vol, director.fop, director.levels, nblocks, 4, what="DIRECTOR")
        if self.tree.leaves[0] != dop:
            raise FormatError(f"directory's first data block is {self.tree.leaves[0]}, ADTDOP says {dop}",
                              device=vol.name, block=dop, struct="FST")
        if 0 in self.tree.leaves:
            raise FormatError("directory has a null block", device=vol.name, block=director.fop, struct="pointer")
        self.blocks: list[bytearray] = [bytearray(first)]
        for b in self.tree.leaves[1:]:
            self.blocks.append(bytearray(vol.read_block(b)))
        self.count = director.records
        # Whole blocks at a time: one C-level unpack per FST (FST_STRUCT is derived from the FST
        # declaration), then only the slots inside the record count are kept.
        self.slots: list[Fst] = [Fst(*t) for blk in self.blocks for t in FST_STRUCT.iter_unpack(blk)]
        del self.slots[self.count:]
        allocmap = self.slots[1]
        if allocmap.fname != ALLOCMAP_NAME or allocmap.ftype != ALLOCMAP_TYPE:
            raise FormatError("slot 1 of the directory is not the ALLOCMAP FST", device=vol.name, block=dop,
                              offset=FST_SIZE, struct="FST")
        self.anomalies: list[str] = []
        self.index: dict[tuple[bytes, bytes], int] = {}
        self._build_index()

    @property
    def director(self) -> Fst:
        return self.slots[0]

    @property
    def allocmap(self) -> Fst:
        return self.slots[1]

    def _build_index(self) -> None:
        """Name -> slot, accepting the states an interrupted fsproto writer leaves (module docstring)."""
        self.index.clear()
        self.anomalies.clear()
        last = self.count - 1
        for i in range(2, self.count):
            f = self.slots[i]
            if f.is_free:
                self.anomalies.append(f"slot {i} is free inside the directory's record count")
                continue
            k = f.key
            j = self.index.get(k)
            if j is None:
                self.index[k] = i
                continue
            other = self.slots[j]
            if i == last and f.to_bytes() == other.to_bytes():
                self.anomalies.append(f"slot {i} duplicates slot {j} (interrupted delete)")
            elif f.marked != other.marked:
                self.anomalies.append(f"slots {j} and {i} share a name (interrupted rename)")
                if f.marked:
                    self.index[k] = i
            elif not self.strict:
                self.conflicts.append((j, i))
            else:
                raise FormatError(f"file {f.display_name()} appears in slots {j} and {i}", device=self.vol.name,
                                  block=self.block_of(i), offset=(i * FST_SIZE) % self.vol.block_size,
                                  struct="FST")
        for i, f in enumerate(self.slots[2:], 2):
            if f.marked and self.index.get(f.key) == i and not any("share a name" in a for a in self.anomalies):
                self.anomalies.append(f"slot {i} still carries the rename mark")

    def block_of(self, slot: int) -> int:
        return self.tree.leaves[(slot * FST_SIZE) // self.vol.block_size]

    def files(self) -> list[tuple[int, Fst]]:
        """User files in directory order."""
        live = set(self.index.values())
        return [(i, self.slots[i]) for i in range(2, self.count) if i in live]

    def lookup(self, key: tuple[bytes, bytes]) -> int | None:
        return self.index.get(key)
