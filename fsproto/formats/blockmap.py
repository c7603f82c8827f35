"""Which blocks belong to what: the block map a format derives from its fsck walk.

A format that implements :meth:`fsproto.formats.base.Format.block_map` returns a
:class:`BlockMap`: the volume cut into extents of *units* (CMS blocks, FAT sectors, a plugin's
blocks), each with a role from :data:`ROLES`, the file or structure that owns it and, where the
format declares one, the construct struct every unit of the extent holds. The map is built from
the same walk fsck makes (:class:`BlockClaims` records it), so the picture and the findings
cannot disagree; the findings themselves ride along in :attr:`BlockMap.problems`. Unreadable blocks are found by
one scan of the device (:func:`readable_view`); the walk then runs on a view where they read as
zeros, so a bad sector is marked on the map instead of ending it.

``fsproto map`` draws it and ``fsproto explore`` browses it (``fsproto/view/``); nothing here
draws. Limits: the scan reads the whole device once (1 MiB at a time); one :class:`Claim` object per claiming call, one dict slot per claimed unit (a
1 GiB CMS disk of 4 KiB blocks is 262,144 slots); extents are merged runs, so a map's size grows
with fragmentation, not with the disk.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from fsproto.errors import DeviceError, MediaError, ReadOnlyError
from fsproto.formats.base import Problem
from fsproto.rawdev import BlockDevice, WrappedDevice

# Role keys, in the order legends list them, with the words a legend shows.
ROLES: dict[str, str] = {
    "label": "label / boot sector",
    "reserved": "reserved",
    "allocmap": "allocation map / FAT",
    "directory": "directory",
    "pointer": "pointer block",
    "data": "file data",
    "free": "free",
    "leaked": "marked used, reachable from nothing",
    "unmarked": "in use, free in the map",
    "cross-linked": "claimed twice",
    "bad": "marked bad",
    "unreadable": "unreadable",
    "unknown": "not reached (walk stopped)",
}
# Roles that report a problem: they win over the others when several units share one map cell.
PROBLEM_ROLES = ("cross-linked", "unreadable", "unmarked", "leaked", "bad")


@dataclass(frozen=True)
class Claim:
    """What one claiming call says about its blocks (shared by all of them)."""

    who: str  # how fsck names the claimant in its messages, e.g. "PROFILE.EXEC pointers"
    role: str
    owner: str = ""  # the file (or structure) the blocks belong to
    level: int = 0  # pointer blocks: 1 = lowest


class BlockClaims:
    """Who claims each unit, in the order a fsck walk meets them: the first claim wins and each
    later one is recorded as a cross-link (up to *max_cross*, so a disk of loops stays bounded)."""

    def __init__(self, *, max_cross: int = 1000) -> None:
        self.first: dict[int, Claim] = {}
        self.cross: list[tuple[int, Claim, Claim]] = []
        self._max_cross = max_cross

    def claim(self, units: Iterable[int], who: str, role: str, owner: str = "", level: int = 0) -> None:
        """Claim *units* (0 entries, null pointers, are skipped)."""
        c = Claim(who, role, owner, level)
        first = self.first
        for u in units:
            if not u:
                continue
            prev = first.get(u)
            if prev is None:
                first[u] = c
            elif len(self.cross) < self._max_cross:
                self.cross.append((u, prev, c))

    def __contains__(self, unit: int) -> bool:
        return unit in self.first

    def __iter__(self) -> Iterator[int]:
        return iter(self.first)


@dataclass(frozen=True)
class Extent:
    """Units ``start .. start + count - 1``, all of one role and owner."""

    start: int
    count: int
    role: str
    owner: str = ""
    level: int = 0
    struct: Any = None  # construct struct each unit holds (None: raw bytes)
    note: str = ""  # e.g. both claimants of a cross-linked unit

    @property
    def end(self) -> int:
        return self.start + self.count

    def describe(self) -> str:
        what = f"pointer level {self.level}" if self.role == "pointer" else ROLES.get(self.role, self.role)
        return what + (f" of {self.owner}" if self.owner else "") + (f" ({self.note})" if self.note else "")


@dataclass
class BlockMap:
    """A volume's units by role. *extents* are sorted, disjoint and cover ``first .. first+count-1``."""

    device: str
    format: str
    unit: str  # "block", "sector"
    unit_size: int
    first: int  # number of the first unit (CMS: 1, FAT: 0)
    count: int
    extents: list[Extent]
    problems: list[Any] = field(default_factory=list)  # fsck's findings (fsproto.formats.base.Problem)
    read_unit: Callable[[int, int], bytes] | None = None  # read(unit, count); raises DeviceError, FormatError
    text_codec: str = "latin-1"  # how a hex view shows text bytes (CMS: cp1047)
    pointer_target: Callable[[str, int], int | None] | None = None  # (field path, value) -> unit to follow
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = [e.start for e in self.extents]

    def extent_at(self, unit: int) -> Extent:
        """The extent holding *unit*. Raises IndexError outside the volume."""
        if not self.first <= unit < self.first + self.count:
            raise IndexError(f"{self.unit} {unit} is outside {self.first}..{self.first + self.count - 1}")
        return self.extents[bisect_right(self._starts, unit) - 1]

    def role_counts(self) -> dict[str, int]:
        """Units per role, in :data:`ROLES` order (roles with none left out)."""
        counts: dict[str, int] = {}
        for e in self.extents:
            counts[e.role] = counts.get(e.role, 0) + e.count
        return {r: counts[r] for r in ROLES if r in counts} | {r: n for r, n in counts.items() if r not in ROLES}

    def units_of(self, owner: str) -> list[int]:
        """Every unit *owner* holds (data, pointers, directory), in unit order."""
        return [u for e in self.extents if e.owner == owner for u in range(e.start, e.end)]

    def owners(self) -> list[str]:
        """Owners of data in first-appearance order (a renderer's colour order)."""
        seen: dict[str, None] = {}
        for e in self.extents:
            if e.role in ("data", "pointer") and e.owner:
                seen.setdefault(e.owner, None)
        return list(seen)

    def role_of(self, unit: int) -> str:
        return self.extent_at(unit).role


UnitInfo = tuple[str, str, int, Any, str]  # role, owner, level, struct, note


def extents_from(first: int, count: int, info: Callable[[int], UnitInfo]) -> list[Extent]:
    """Run-length merge of per-unit :data:`UnitInfo` into extents (one call per unit)."""
    out: list[Extent] = []
    cur: UnitInfo | None = None
    start = first
    for u in range(first, first + count):
        i = info(u)
        if i != cur:
            if cur is not None:
                out.append(Extent(start, u - start, *cur))
            cur, start = i, u
    if cur is not None:
        out.append(Extent(start, first + count - start, *cur))
    return out


def find_unreadable(read: Callable[[int, int], bytes], first: int, count: int, *, chunk: int = 256) -> set[int]:
    """Units whose read fails with a media error: chunked reads, unit by unit only where a chunk fails."""
    bad: set[int] = set()
    for lo in range(first, first + count, chunk):
        n = min(chunk, first + count - lo)
        try:
            read(lo, n)
            continue
        except MediaError:
            pass
        for u in range(lo, lo + n):
            try:
                read(u, 1)
            except (MediaError, DeviceError):
                bad.add(u)
    return bad


class ZeroFilledDevice(WrappedDevice):
    """*inner* read-only, with the device blocks in *bad* reading as zeros: the view a block
    map's walk runs on, so one bad sector under a V file's data does not stop the whole walk
    (the map marks those blocks unreadable; fsck on the real device still stops there)."""

    def __init__(self, inner: BlockDevice, bad: set[int]) -> None:
        super().__init__(inner, inner.name, inner.block_size, inner.num_blocks, read_only=True, owns_inner=False)
        self._bad = set(bad)

    def _read(self, lba: int, count: int) -> bytes:
        hit = [b for b in range(lba, lba + count) if b in self._bad]
        if not hit:
            return self._inner.read(lba, count)
        bs, out, pos = self.block_size, bytearray(), lba
        for b in hit + [lba + count]:
            if b > pos:
                out += self._inner.read(pos, b - pos)
            if b < lba + count:
                out += bytes(bs)
            pos = b + 1
        return bytes(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:  # pragma: no cover - read-only
        raise ReadOnlyError("a block map's view is read-only", device=self.name)


def readable_view(dev: BlockDevice, *, chunk_bytes: int = 1 << 20) -> tuple[BlockDevice, set[int]]:
    """Scan *dev* once; returns (a view where unreadable device blocks read as zeros, those blocks)."""
    bad = find_unreadable(dev.read, 0, dev.num_blocks, chunk=max(1, chunk_bytes // dev.block_size))
    return (ZeroFilledDevice(dev, bad) if bad else dev), bad


def units_on(bad_lbas: set[int], dev_block: int, unit_size: int, first_unit: int) -> set[int]:
    """Units (of *unit_size* bytes, numbered from *first_unit* at byte 0) overlapping *bad_lbas*."""
    out: set[int] = set()
    for lba in bad_lbas:
        lo, hi = lba * dev_block, (lba + 1) * dev_block
        out.update(range(first_unit + lo // unit_size, first_unit + (hi - 1) // unit_size + 1))
    return out


def unreadable_problem(dev: BlockDevice, bad_lbas: set[int]) -> Problem:
    shown = ", ".join(map(str, sorted(bad_lbas)[:8])) + (", ..." if len(bad_lbas) > 8 else "")
    return Problem("unreadable", f"{len(bad_lbas)} device block(s) of {dev.block_size} B fail to read "
                   f"(LBA {shown}); the walk read them as zeros")


def mark_unreadable(extents: list[Extent], bad: set[int]) -> list[Extent]:
    """*extents* with every unit in *bad* split out as role ``unreadable`` (its owner kept)."""
    if not bad:
        return extents
    out: list[Extent] = []
    for e in extents:
        hit = sorted(u for u in bad if e.start <= u < e.end) if e.count < 4 * len(bad) else \
            [u for u in range(e.start, e.end) if u in bad]
        if not hit:
            out.append(e)
            continue
        pos = e.start
        for u in hit:
            if u > pos:
                out.append(Extent(pos, u - pos, e.role, e.owner, e.level, e.struct, e.note))
            out.append(Extent(u, 1, "unreadable", e.owner, e.level, None, f"was {e.role}"))
            pos = u + 1
        if pos < e.end:
            out.append(Extent(pos, e.end - pos, e.role, e.owner, e.level, e.struct, e.note))
    return out
