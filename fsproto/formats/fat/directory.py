"""FAT directories: 8.3 and VFAT long-name entries, short-name generation, slot allocation.

References: fatgen103 sections 6 (directory entries, dates and times), 6.1 (8.3 names), 7
(long names: ordinals, checksum, the basis-name and numeric-tail algorithm). Short names are
read as code page 437 and honour the Windows NT / Linux lower-case bits in DIR_NTRes. Lookups
are case-insensitive (as Windows and Linux vfat do); names keep the case they were created with.

A directory is read whole into memory (at most 65,536 entries = 2 MiB, fatgen103 section 6) and
written back sector by sector: new entries in ascending slot order so the short entry lands
last, deletions in descending order so the short entry goes first (a cut leaves only orphan
long-name parts, which readers skip and fsck removes).
"""

from __future__ import annotations

import calendar
import contextlib
import time
from dataclasses import dataclass, replace

from fsproto.errors import InvalidName, NameTooLong, NoSpace
from fsproto.formats.fat import layout
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.volume import Volume

OEM = "cp437"  # the OEM code page Linux vfat and mtools use by default for short names
unpack_entry = layout.DIR_ENTRY_VIEW.struct.unpack_from  # fields in DIR_ENTRY's order


@dataclass(frozen=True)
class DirEntry:
    """One live file or directory entry, with where it sits in its directory."""

    name: str  # the long name, or the short name as displayed
    short: bytes  # DIR_Name, 11 bytes
    attr: int
    ntres: int
    crt_tenth: int
    crt_time: int
    crt_date: int
    acc_date: int
    cluster: int
    wrt_time: int
    wrt_date: int
    size: int
    slot: int  # index of the 8.3 entry
    first_slot: int  # index of the first long-name entry (== slot without a long name)

    @property
    def is_dir(self) -> bool:
        return bool(self.attr & layout.ATTR_DIRECTORY)

    @property
    def mtime_ns(self) -> int:
        return fat_to_ns(self.wrt_date, self.wrt_time)

    def build(self) -> bytes:
        """The 32 bytes of the 8.3 entry."""
        return layout.DIR_ENTRY.build(dict(
            DIR_Name=self.short, DIR_Attr=self.attr, DIR_NTRes=self.ntres, DIR_CrtTimeTenth=self.crt_tenth,
            DIR_CrtTime=self.crt_time, DIR_CrtDate=self.crt_date, DIR_LstAccDate=self.acc_date,
            DIR_FstClusHI=self.cluster >> 16, DIR_WrtTime=self.wrt_time, DIR_WrtDate=self.wrt_date,
            DIR_FstClusLO=self.cluster & 0xFFFF, DIR_FileSize=self.size))


# -- dates and times (fatgen103 section 6): local time by convention; fsproto uses UTC ----------
def ns_to_fat(ns: int) -> tuple[int, int, int]:
    """(date, time, tenths) for a time in ns since the epoch, clamped to 1980..2107."""
    t = time.gmtime(ns // 1_000_000_000)
    year = min(max(t.tm_year, 1980), 2107)
    if t.tm_year < 1980:
        return (0 << 9) | (1 << 5) | 1, 0, 0
    date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    tm = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    tenth = (t.tm_sec % 2) * 100 + (ns // 10_000_000) % 100
    return date, tm, tenth


def fat_to_ns(date: int, tm: int) -> int:
    """ns since the epoch for a FAT date and time; invalid fields read as the FAT epoch."""
    year, month, day = 1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F
    hour, minute, sec = tm >> 11, (tm >> 5) & 0x3F, (tm & 0x1F) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and sec < 60):
        year, month, day, hour, minute, sec = 1980, 1, 1, 0, 0, 0
    return calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0)) * 1_000_000_000


# -- names ------------------------------------------------------------------------------------
def lfn_checksum(short: bytes) -> int:
    """fatgen103 section 7: the rotate-right-and-add checksum of the 11-byte short name."""
    s = 0
    for b in short:
        s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
    return s


def short_display(short: bytes, ntres: int) -> str:
    base = short[:8].rstrip(b" ")
    ext = short[8:].rstrip(b" ")
    if base[:1] == bytes([layout.DIR_KANJI_E5]):
        base = b"\xe5" + base[1:]
    b, e = base.decode(OEM), ext.decode(OEM)
    if ntres & layout.NTRES_LOWER_BASE:
        b = b.lower()
    if ntres & layout.NTRES_LOWER_EXT:
        e = e.lower()
    return f"{b}.{e}" if e else b


def _short_char_ok(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch in layout.SHORT_NAME_SPECIALS
    try:
        return ord(ch) > 127 and len(ch.encode(OEM)) == 1
    except UnicodeEncodeError:
        return False


def strip_trailing_dots(name: str) -> str:
    """A name as Linux vfat reads it: trailing dots dropped (``vfat_striptail_len`` in
    fs/fat/namei_vfat.c), so ``abc.`` finds and creates ``abc``. ``.`` and ``..`` stay."""
    return name if name in (".", "..") else name.rstrip(".")


def check_long_name(name: str) -> None:
    """Raises InvalidName / NameTooLong for a name no FAT directory can hold."""
    if not name or name in (".", ".."):
        raise InvalidName(f"invalid file name {name!r}")
    if len(name.encode("utf-16-le")) // 2 > layout.LFN_MAX_CHARS:
        raise NameTooLong(f"name of {len(name)} characters is longer than {layout.LFN_MAX_CHARS}")
    for ch in name:
        if ord(ch) < 32 or ch in '"*/:<>?\\|\x7f':
            raise InvalidName(f"character {ch!r} is not allowed in a FAT name: {name!r}")
    if name.rstrip(" .") != name:
        # Callers strip trailing dots first, as vfat does (strip_trailing_dots); a trailing
        # space is refused with EINVAL, as vfat does (measured: tests/test_errno_table.py).
        raise InvalidName(f"a FAT name cannot end in a dot or a space: {name!r}")


def exact_short_name(name: str) -> bytes | None:
    """The 8.3 entry name when *name* is already a valid upper-case 8.3 name, else None."""
    if name != name.upper() or name.startswith("."):
        return None
    base, dot, ext = name.partition(".")
    if "." in ext or not 1 <= len(base) <= 8 or len(ext) > 3 or (dot and not ext):
        return None
    if not all(_short_char_ok(c) for c in base + ext):
        return None
    raw = base.encode(OEM).ljust(8) + ext.encode(OEM).ljust(3)
    if raw[0] == 0xE5:
        raw = bytes([layout.DIR_KANJI_E5]) + raw[1:]
    return raw


def generate_short_name(name: str, taken: set[bytes]) -> bytes:
    """The basis-name (fatgen103 section 7), with a ``~N`` tail when the conversion lost
    information or the basis is taken; never one in *taken*. Raises NoSpace."""
    upper = name.upper()
    cleaned = "".join(c if _short_char_ok(c) or c in ". " else "_" for c in upper)
    lossy = cleaned != upper
    stripped = cleaned.replace(" ", "").lstrip(".")
    lossy |= stripped != cleaned
    if "." in stripped:
        dot = stripped.rindex(".")
        stem, ext = stripped[:dot], stripped[dot + 1 :]
        lossy |= "." in stem
        stem = stem.replace(".", "")
    else:
        stem, ext = stripped, ""
    lossy |= not stem or len(stem) > 8 or len(ext) > 3
    stem = stem or "_"
    ext_b = ext[:3].encode(OEM, "replace").ljust(3)
    stem_b = stem.encode(OEM, "replace")
    if not lossy:
        cand = stem_b.ljust(8) + ext_b
        if cand[0] == 0xE5:
            cand = bytes([layout.DIR_KANJI_E5]) + cand[1:]
        if cand not in taken:
            return cand
    for n in range(1, 1_000_000):
        tail = f"~{n}".encode()
        cand = (stem_b[: 8 - len(tail)] + tail).ljust(8) + ext_b
        if cand not in taken:
            return cand
    raise NoSpace(f"no free short name for {name!r}")


def build_lfn_slots(name: str, short: bytes) -> list[bytes]:
    """The long-name entries for *name*, in on-disk order (last part first)."""
    units = name.encode("utf-16-le")
    chars = [units[i : i + 2] for i in range(0, len(units), 2)]
    if len(chars) % layout.LFN_CHARS:
        chars.append(b"\0\0")  # NUL-terminated unless it fills the last entry exactly
    while len(chars) % layout.LFN_CHARS:
        chars.append(b"\xff\xff")
    csum = lfn_checksum(short)
    parts = [b"".join(chars[i : i + layout.LFN_CHARS]) for i in range(0, len(chars), layout.LFN_CHARS)]
    slots = []
    for i, p in enumerate(parts):
        ordinal = (i + 1) | (layout.LFN_LAST if i == len(parts) - 1 else 0)
        slots.append(layout.LFN_ENTRY.build(dict(
            LDIR_Ord=ordinal, LDIR_Name1=p[0:10], LDIR_Attr=layout.ATTR_LONG_NAME, LDIR_Type=0,
            LDIR_Chksum=csum, LDIR_Name2=p[10:22], LDIR_FstClusLO=0, LDIR_Name3=p[22:26])))
    return slots[::-1]


def _lfn_chars(raw: bytes) -> bytes:
    return raw[1:11] + raw[14:26] + raw[28:32]


def parse_entries(raw: bytes | bytearray, *, orphans: list[int] | None = None) -> list[DirEntry]:
    """Every live entry of a directory's bytes (no volume label, no dot entries).

    Long-name parts with a wrong ordinal sequence or checksum are skipped; their slot numbers
    go to *orphans* when given (fsck reports them).
    """
    out: list[DirEntry] = []
    lfn: list[bytes] = []
    lfn_start = -1
    expect = 0
    csum = -1
    mv = memoryview(raw)
    nslots = len(raw) // 32
    # Each slot's first and attribute bytes, gathered in C: the loop below then touches a slot's
    # other bytes only when it is a live entry (a listing of 10,000 files walks 30,000 slots).
    firsts = bytes(raw[0::32][:nslots])
    attrs = bytes(raw[11::32][:nslots])
    end = firsts.find(layout.DIR_END)
    for i in range(nslots if end < 0 else end):
        first = firsts[i]
        attr = attrs[i]
        if first == layout.DIR_FREE:
            if lfn and orphans is not None:
                orphans.extend(range(lfn_start, i))
            lfn, expect = [], 0
            continue
        if attr & layout.ATTR_LONG_NAME_MASK == layout.ATTR_LONG_NAME:
            slot = bytes(mv[i * 32 : i * 32 + 32])
            if first & layout.LFN_LAST:
                if lfn and orphans is not None:
                    orphans.extend(range(lfn_start, i))
                expect = first & 0x1F
                csum = slot[13]
                lfn, lfn_start = [], i
                if not 1 <= expect <= layout.LFN_MAX_ENTRIES:
                    expect = 0
                    if orphans is not None:
                        orphans.append(i)
                    continue
            elif not lfn or first != expect or slot[13] != csum:
                if lfn and orphans is not None:
                    orphans.extend(range(lfn_start, i))
                if orphans is not None:
                    orphans.append(i)
                lfn, expect = [], 0
                continue
            lfn.append(_lfn_chars(slot))
            expect -= 1
            continue
        (name83, _attr, ntres, crt_tenth, crt_time, crt_date, acc_date, clus_hi, wrt_time, wrt_date, clus_lo,
         size) = unpack_entry(raw, i * 32)
        long_name = None
        if lfn and expect == 0 and lfn_checksum(name83) == csum:
            units = b"".join(reversed(lfn))
            end = len(units)
            for k in range(0, len(units), 2):
                if units[k : k + 2] == b"\0\0":
                    end = k
                    break
            long_name = units[:end].decode("utf-16-le", "replace")
        elif lfn and orphans is not None:
            orphans.extend(range(lfn_start, i))
        start = lfn_start if long_name is not None else i
        lfn, expect = [], 0
        if attr & layout.ATTR_VOLUME_ID or name83 in (b".          ", b"..         "):
            continue
        out.append(DirEntry(
            long_name or short_display(name83, ntres), name83, attr, ntres, crt_tenth, crt_time, crt_date,
            acc_date, (clus_hi << 16) | clus_lo, wrt_time, wrt_date, size, i, start))
    return out


def new_entry(short: bytes, name: str, attr: int, cluster: int, mtime_ns: int) -> DirEntry:
    """A fresh entry (slots filled in when it is placed)."""
    date, tm, tenth = ns_to_fat(mtime_ns)
    return DirEntry(name, short, attr, 0, tenth, tm, date, date, cluster, tm, date, 0, -1, -1)


def dot_entries(self_cluster: int, parent_cluster: int, mtime_ns: int) -> bytes:
    """The ``.`` and ``..`` entries of a new directory (``..`` is 0 when the parent is the root)."""
    dot = new_entry(b".          ", ".", layout.ATTR_DIRECTORY, self_cluster, mtime_ns)
    dotdot = replace(dot, short=b"..         ", cluster=parent_cluster)
    return dot.build() + dotdot.build()


class Directory:
    """One directory's raw bytes, loaded whole, with sector-granular write-back."""

    def __init__(self, vol: Volume, fat: FatTable, cluster: int, *, owner: str = "",
                 chain: list[int] | None = None) -> None:
        """Load the directory starting at *cluster* (0 = the FAT12/16 fixed root).

        *chain* skips the FAT walk (fsck passes the chain it already checked). Raises FormatError
        for a broken chain (naming the cluster), DeviceError.
        """
        self.vol, self.fat, self.cluster = vol, fat, cluster
        g = vol.geo
        if cluster == 0:
            self.chain: list[int] = []
            self.raw = bytearray(vol.read_bytes(vol.sector_offset(g.root_dir_sector), g.root_entries * 32))
        else:
            limit = layout.MAX_DIR_ENTRIES * 32 // g.cluster_size + 1
            self.chain = chain if chain is not None else fat.chain(cluster, owner=owner or "directory")
            if len(self.chain) > limit:
                raise vol.format_error(f"directory chain of {len(self.chain)} clusters exceeds 65536 entries",
                                       cluster=cluster, struct="directory")
            self.raw = bytearray(self._read_chain())
        # Parsed once per load, then kept in step with every add/update/remove (slot order);
        # _index maps upper-cased long and short names to entries for O(1) lookups.
        self._entries: list[DirEntry] | None = None
        self._index: dict[str, DirEntry] = {}
        self._held: list[int] | None = None  # slots whose sectors one_write() writes at its end

    def _read_chain(self) -> bytes:
        parts = []
        for c in self.chain:
            parts.append(self.vol.read_clusters(c))
        return b"".join(parts)

    def entries(self) -> list[DirEntry]:
        if self._entries is None:
            self._entries = parse_entries(self.raw)
            self._index = {}
            for e in reversed(self._entries):  # the first of two equal names wins, as in a scan
                self._index_add(e)
        return self._entries

    def _keys(self, e: DirEntry) -> tuple[str, str]:
        return e.name.upper(), short_display(e.short, 0).upper()

    def _index_add(self, e: DirEntry) -> None:
        for k in self._keys(e):
            self._index[k] = e

    def _track(self, old: DirEntry | None, new: DirEntry | None) -> None:
        """Keep the parsed list and the index in step with one entry change."""
        if self._entries is None:
            return
        if old is not None:
            self._entries = [x for x in self._entries if x.slot != old.slot]
            for k in self._keys(old):
                if self._index.get(k) is not None and self._index[k].slot == old.slot:
                    del self._index[k]
        if new is not None:
            pos = len(self._entries)
            while pos and self._entries[pos - 1].slot > new.slot:
                pos -= 1
            self._entries.insert(pos, new)
            self._index_add(new)

    def find(self, name: str) -> DirEntry | None:
        """The entry named *name*, matched case-insensitively against long and short names."""
        self.entries()
        return self._index.get(name.upper())

    # -- writing ------------------------------------------------------------------------------
    def _slot_offset(self, slot: int) -> int:
        """Device byte offset of slot *slot*."""
        if self.cluster == 0:
            return self.vol.sector_offset(self.vol.geo.root_dir_sector) + slot * 32
        cs = self.vol.geo.cluster_size
        return self.vol.cluster_offset(self.chain[slot * 32 // cs]) + (slot * 32) % cs

    @contextlib.contextmanager
    def one_write(self):  # type: ignore[no-untyped-def]
        """Hold back the slot writes made inside, then write each touched sector once.

        A rename's remove-target, add-new-name and remove-old-name then reach the disk together
        when they share a sector (one sector write is atomic): no crash state with both names on
        one chain, or with neither. Across sectors they go in sector order (not atomic)."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                self._write_slots(held)

    def _write_slots(self, slots: list[int], *, descending: bool = False) -> None:
        if self._held is not None:
            self._held.extend(slots)
            return
        ss = self.vol.geo.sector_size
        sectors = sorted({s * 32 // ss for s in slots}, reverse=descending)
        per = ss // 32
        for sec in sectors:
            dev_off = self._slot_offset(sec * per)
            self.vol.write_bytes(dev_off, self.raw[sec * ss : (sec + 1) * ss])

    def _find_free_run(self, count: int) -> int | None:
        run = 0
        for i in range(len(self.raw) // 32):
            first = self.raw[i * 32]
            if first == layout.DIR_END:
                # Everything from the end marker on is free.
                start = i - run
                return start if start + count <= len(self.raw) // 32 else None
            if first == layout.DIR_FREE:
                run += 1
                if run == count:
                    return i - count + 1
            else:
                run = 0
        return None

    def _grow(self, count: int) -> None:
        """Add zeroed clusters so *count* more slots fit at the end. Raises NoSpace."""
        g = self.vol.geo
        if self.cluster == 0:
            raise NoSpace("the FAT12/16 root directory is full", device=self.vol.name)
        if len(self.raw) // 32 + count > layout.MAX_DIR_ENTRIES:
            raise NoSpace("directory already holds 65536 entries", device=self.vol.name)
        need = (count * 32 + g.cluster_size - 1) // g.cluster_size
        new = self.fat.allocate(need, after=self.chain[-1])
        zero = bytes(g.cluster_size)
        for c in new:  # zero the clusters before they are linked in: old bytes must not show
            self.vol.write_clusters(c, zero)
        self.fat.flush()
        self.fat.set(self.chain[-1], new[0])
        self.fat.flush()
        self.chain.extend(new)
        self.raw += bytes(need * g.cluster_size)

    def add(self, entry: DirEntry, long_name: str | None) -> DirEntry:
        """Place *entry* (with long-name parts for *long_name*) in free slots; returns it placed.

        Raises NoSpace (fixed root full, 65536 entries, disk full).
        """
        lfn = build_lfn_slots(long_name, entry.short) if long_name else []
        n = len(lfn) + 1
        start = self._find_free_run(n)
        if start is None:
            end = self._end_slot()
            # Reuse the free tail of the directory, then grow it by whole clusters.
            self._grow(n - (len(self.raw) // 32 - end))
            start = end
        placed = replace(entry, slot=start + len(lfn), first_slot=start)
        for k, data in enumerate(lfn + [placed.build()]):
            self.raw[(start + k) * 32 : (start + k + 1) * 32] = data
        self._write_slots(list(range(start, start + n)))
        self._track(None, placed)
        return placed

    def _end_slot(self) -> int:
        """First slot after the last used one (free slots at the end form one run)."""
        total = len(self.raw) // 32
        end = 0
        for i in range(total):
            first = self.raw[i * 32]
            if first == layout.DIR_END:
                break
            if first != layout.DIR_FREE:
                end = i + 1
        return end

    def write_slot(self, slot: int) -> None:
        """Write the sector holding *slot* after the caller patched ``raw`` (re-parsed lazily)."""
        self._write_slots([slot])
        self._entries = None

    def update(self, entry: DirEntry) -> None:
        """Rewrite the 8.3 entry of *entry* in place (size, cluster, times, attributes)."""
        old = next((x for x in self.entries() if x.slot == entry.slot), None)
        self.raw[entry.slot * 32 : entry.slot * 32 + 32] = entry.build()
        self._write_slots([entry.slot])
        self._track(old, entry)

    def remove(self, entry: DirEntry) -> None:
        """Mark every slot of *entry* deleted; the 8.3 entry's sector is written first."""
        slots = list(range(entry.first_slot, entry.slot + 1))
        for s in slots:
            self.raw[s * 32] = layout.DIR_FREE
        self._write_slots(slots, descending=True)
        self._track(entry, None)

    def shorts(self) -> set[bytes]:
        """Every 8.3 name in use (including dot entries and the label) for tail generation."""
        out = set()
        for i in range(len(self.raw) // 32):
            first = self.raw[i * 32]
            if first == layout.DIR_END:
                break
            attr = self.raw[i * 32 + 11]
            if first != layout.DIR_FREE and attr & layout.ATTR_LONG_NAME_MASK != layout.ATTR_LONG_NAME:
                out.add(bytes(self.raw[i * 32 : i * 32 + 11]))
        return out

    def is_empty(self) -> bool:
        return not self.entries()
