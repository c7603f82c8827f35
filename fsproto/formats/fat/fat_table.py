"""The File Allocation Table: entries, cluster chains, allocation, write-back to every copy.

References: fatgen103 section 4 (FAT entry values, FAT12 packing, reserved entries 0 and 1).
The active FAT is held in memory as one integer per cluster (4 bytes each: at most 1 GiB for the
largest FAT32 volume, 256 KiB for a 4 GiB one). Writes go to every FAT copy (or only the active
one when FAT32 mirroring is off), sector by sector, in ascending order.

Chains are walked with a bound (the number of clusters, or the caller's expected length), so a
loop or a chain that leaves the disk is a FormatError naming the cluster, never a hang.
"""

from __future__ import annotations

import sys
from array import array

from fsproto.errors import NoSpace
from fsproto.formats.fat import layout
from fsproto.formats.fat.volume import Volume


_RUN_PROBE = 8  # first slice tried for a contiguous run; doubled while runs continue


class FatTable:
    """In-memory copy of the active FAT with dirty-sector write-back."""

    def __init__(self, vol: Volume) -> None:
        """Load the active FAT. Raises DeviceError."""
        self.vol = vol
        g = vol.geo
        self.fat_type = g.fat_type
        self.eoc = layout.FAT_EOC[g.fat_type]
        self.eoc_min = layout.FAT_EOC_MIN[g.fat_type]
        self.bad = layout.FAT_BAD[g.fat_type]
        self.max_cluster = g.max_cluster
        n = g.cluster_count + 2
        nbytes = (n * g.fat_type + 7) // 8
        first = g.reserved_sectors + (g.active_fat or 0) * g.fat_sectors
        raw = vol.read_bytes(vol.sector_offset(first), nbytes)
        if g.fat_type == 12:
            self.entries = array("I", (self._fat12_get(raw, i) for i in range(n)))
        else:
            self.entries = array("H" if g.fat_type == 16 else "I")
            self.entries.frombytes(raw[: n * (g.fat_type // 8)])
            if sys.byteorder == "big":
                self.entries.byteswap()
        # FAT32's top 4 bits are reserved: keep the on-disk values to write them back unchanged.
        self._dirty: set[int] = set()  # FAT sector numbers (0-based within one copy)
        self._free = self._count_free()
        self._succ: array | None = None
        self.next_free = 2

    @staticmethod
    def _fat12_get(raw: bytes, n: int) -> int:
        off = n * 3 // 2
        w = raw[off] | (raw[off + 1] << 8) if off + 1 < len(raw) else raw[off]
        return (w >> 4) if n & 1 else (w & 0xFFF)

    def _count_free(self) -> int:
        if self.fat_type == 32:
            entries = self.entries[2:]
            # Usually no entry has its 4 reserved top bits set, and then a free entry is a zero
            # word, counted in C; checking that is one pass over each entry's top byte.
            top = entries.tobytes()[3::4] if sys.byteorder == "little" else entries.tobytes()[0::4]
            if not top.translate(None, bytes(range(16))):
                return entries.count(0)
            return sum(1 for v in entries if not v & layout.FAT32_MASK)
        return self.entries.count(0) - (self.entries[0] == 0) - (self.entries[1] == 0)

    # -- entries ---------------------------------------------------------------------------
    @property
    def free_count(self) -> int:
        return self._free

    def get(self, n: int) -> int:
        v = self.entries[n]
        return v & layout.FAT32_MASK if self.fat_type == 32 else v

    def set(self, n: int, value: int) -> None:
        old = self.get(n)
        if old == 0 and value != 0:
            self._free -= 1
        elif old != 0 and value == 0:
            self._free += 1
        if self.fat_type == 32:
            value = (self.entries[n] & ~layout.FAT32_MASK) | value
        self.entries[n] = value
        bits = self.fat_type
        ss = self.vol.geo.sector_size
        self._dirty.add(n * bits // 8 // ss)
        self._dirty.add(((n + 1) * bits - 1) // 8 // ss)  # a FAT12 entry may straddle two sectors

    def is_eoc(self, value: int) -> bool:
        return value >= self.eoc_min

    def is_free(self, n: int) -> bool:
        return self.get(n) == 0

    # -- chains ------------------------------------------------------------------------------
    def chain(self, start: int, *, limit: int | None = None, owner: str = "",
              prefix: list[int] | None = None) -> list[int]:
        """The clusters of the chain starting at *start* (empty for start 0).

        Stops after *limit* clusters when given (a file needs no more than its size); *prefix*,
        a chain already walked from *start*, is continued instead of walked again. Raises
        FormatError naming the cluster for a start or link outside the disk, a link into a free
        or bad cluster, or a loop.
        """
        if start == 0:
            return []
        what = f"{owner}: " if owner else ""
        maxc = self.max_cluster
        if not 2 <= start <= maxc:
            raise self.vol.format_error(f"{what}first cluster {start} is outside clusters 2..{maxc}",
                                        cluster=start, struct="FAT")
        out = list(prefix) if prefix else [start]
        seen = set(out)
        bound = maxc if limit is None else min(limit, maxc)
        ent, eoc_min = self.entries, self.eoc_min
        mask = layout.FAT32_MASK if self.fat_type == 32 else 0xFFFFFFFF
        c = out[-1]
        succ = self._succ  # built on the first long chain: short ones never pay for it
        step = _RUN_PROBE
        # The hot loop of every read: locals only; each link is checked before it is followed.
        while len(out) < bound:
            # Contiguous runs (most of any file) are taken a slice at a time, checked in C:
            # entries c..c+k-1 equal to c+1..c+k link straight through; the run's clusters
            # must be on the disk and new to this chain, as a link-by-link walk would demand.
            k = min(step, bound - len(out), maxc - c)
            if succ is None and len(out) >= 64:
                succ = self._successors()
            if k > 1 and succ is not None and ent[c : c + k] == succ[c : c + k] and seen.isdisjoint(range(c + 1, c + k + 1)):
                out.extend(range(c + 1, c + k + 1))
                seen.update(range(c + 1, c + k + 1))
                c += k
                step *= 2
                continue
            if k > 1 and succ is not None:  # the run ends inside the slice: halve towards its end
                step = max(1, k // 2)
                continue
            step = _RUN_PROBE
            nxt = ent[c] & mask
            if nxt >= eoc_min:
                return out
            if nxt < 2 or nxt > maxc or nxt == self.bad or nxt in seen:
                raise self._link_error(what, c, nxt, seen)
            seen.add(nxt)
            out.append(nxt)
            c = nxt
        return out

    def _successors(self) -> array:
        """``succ[i] == i + 1`` in the entries' type: a slice of it is what a contiguous run of
        FAT entries looks like (built once per table, on the first chain walk)."""
        if self._succ is None:
            self._succ = array(self.entries.typecode, range(1, len(self.entries) + 1))  # FAT16: <= 65529
        return self._succ

    def _link_error(self, what: str, c: int, nxt: int, seen: set[int]) -> Exception:
        if nxt == 0:  # c is in a chain but its FAT entry says free
            msg = f"{what}cluster {c} is in a chain but marked free"
        elif nxt == self.bad:
            msg = f"{what}chain links cluster {c} to a bad cluster"
        elif nxt in seen:
            msg = f"{what}chain loops: cluster {c} links back to {nxt}"
        else:
            msg = f"{what}chain runs off the disk: cluster {c} links to {nxt}"
        return self.vol.format_error(msg, cluster=c, struct="FAT")

    # -- allocation -------------------------------------------------------------------------
    def allocate(self, count: int, *, after: int = 0) -> list[int]:
        """Find *count* free clusters (preferring ones after *after*) and chain them, ending in EOC.

        The new chain is linked only in memory; the caller links it to a file and flushes.
        Raises NoSpace (nothing is changed then).
        """
        if count <= 0:
            return []
        if count > self._free:
            raise NoSpace(f"{count} clusters needed, {self._free} free", device=self.vol.name)
        found: list[int] = []
        start = after + 1 if after >= 2 else self.next_free
        if not 2 <= start <= self.max_cluster:
            start = 2
        for lo, hi in ((start, self.max_cluster + 1), (2, start)):
            c = lo
            while c < hi and len(found) < count:
                if self.fat_type == 32:
                    if not self.entries[c] & layout.FAT32_MASK:
                        found.append(c)
                    c += 1
                    continue
                try:
                    c = self.entries.index(0, c, hi)
                except ValueError:
                    break
                found.append(c)
                c += 1
            if len(found) == count:
                break
        if len(found) < count:  # the free counter lied: nothing has been changed yet
            raise NoSpace(f"{count} clusters needed, only {len(found)} free", device=self.vol.name)
        for a, b in zip(found, found[1:]):
            self.set(a, b)
        self.set(found[-1], self.eoc)
        self.next_free = found[-1] + 1
        return found

    def free_chain(self, clusters: list[int]) -> None:
        for c in clusters:
            self.set(c, 0)
        if clusters:
            self.next_free = min(self.next_free, min(clusters))

    # -- write-back ---------------------------------------------------------------------------
    def encode_sector(self, sector: int) -> bytes:
        """The bytes of FAT sector *sector* (within one copy) from the in-memory entries."""
        ss = self.vol.geo.sector_size
        bits = self.fat_type
        if bits == 12:
            # FAT12 is at most 6 KiB: pack it whole; entries straddle sector boundaries.
            whole = bytearray((len(self.entries) * 3 + 1) // 2 + 1)
            for n, v in enumerate(self.entries):
                off = n * 3 // 2
                if n & 1:
                    whole[off] = (whole[off] & 0x0F) | ((v << 4) & 0xF0)
                    whole[off + 1] = (v >> 4) & 0xFF
                else:
                    whole[off] = v & 0xFF
                    whole[off + 1] = (whole[off + 1] & 0xF0) | ((v >> 8) & 0x0F)
            data = bytes(whole[sector * ss : (sector + 1) * ss])
            return data + b"\0" * (ss - len(data))
        per = ss * 8 // bits
        part = self.entries[sector * per : (sector + 1) * per]
        if sys.byteorder == "big":
            part = array(part.typecode, part)
            part.byteswap()
        data = part.tobytes()
        return data + b"\0" * (ss - len(data))

    def mark_all_dirty(self) -> None:
        """Make the next flush rewrite every FAT sector to every copy (fsck: copies differ)."""
        self._dirty.update(range(self.vol.geo.fat_sectors))

    def read_copy(self, copy: int) -> bytes:
        """The raw bytes of FAT copy *copy* that hold entries. Raises DeviceError."""
        g = self.vol.geo
        nbytes = ((g.cluster_count + 2) * g.fat_type + 7) // 8
        return self.vol.read_bytes(self.vol.sector_offset(g.reserved_sectors + copy * g.fat_sectors), nbytes)

    def flush(self) -> None:
        """Write dirty FAT sectors to every FAT copy. Raises DeviceError."""
        if not self._dirty:
            return
        g = self.vol.geo
        copies = [g.active_fat] if g.active_fat is not None else range(g.num_fats)
        for sector in sorted(self._dirty):
            if sector >= g.fat_sectors:
                continue
            data = self.encode_sector(sector)
            for copy in copies:
                self.vol.write_bytes(self.vol.sector_offset(g.reserved_sectors + copy * g.fat_sectors + sector),
                                     data)
        self._dirty.clear()
