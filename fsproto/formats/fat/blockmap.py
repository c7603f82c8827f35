"""The FAT block map, in sectors: every sector's role, drawn from fsck's own walk (fsck.walk).

Roles: the boot sector (label), the other reserved sectors (FSInfo and the backup boot sector
named as such), each FAT copy (allocation map), the FAT12/16 fixed root directory, and per data
cluster: a directory's or a file's (by path) as fsck's walk assigned it, free, bad (marked bad in
the FAT), "leaked" (a chain no entry reaches: fsck's lost clusters) or "cross-linked" (a second
entry's chain runs into it); sectors past the last cluster are reserved. References: fatgen103
sections 3-6.

Limits: one sector is the unit, so a cluster is ``BPB_SecPerClus`` units of one role; a FAT32
directory entry's first cluster is followed from ``DIR_FstClusLO`` alone (``DIR_FstClusHI`` is
a separate field), which is right below cluster 65536.
"""

from __future__ import annotations

from construct import Array, Struct

from fsproto.formats.blockmap import (BlockMap, UnitInfo, extents_from, mark_unreadable, readable_view,
                                     unreadable_problem, units_on)
from fsproto.formats.fat import layout
from fsproto.formats.fat.fsck import walk
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import BlockDevice


def block_map(dev: BlockDevice) -> BlockMap:
    """The map of the FAT volume on *dev*. Raises UnknownFormat, FormatError (boot sector), DeviceError."""
    view, bad_lbas = readable_view(dev)
    chk = walk(view)
    fat, g = chk.fat, chk.vol.geo
    ss, spc = g.sector_size, g.sectors_per_cluster
    boot = layout.BOOT_SECTOR_FAT32 if g.fat_type == 32 else layout.BOOT_SECTOR_FAT16
    dir_sector = Struct("entries" / Array(ss // layout.DIR_ENTRY_SIZE, layout.DIR_ENTRY))
    fat_start, fat_end = g.reserved_sectors, g.reserved_sectors + g.num_fats * g.fat_sectors
    data_end = g.data_sector + g.cluster_count * spc
    backup = chk.vol.boot_fields.get("BPB_BkBootSec", 0) if g.fat_type == 32 else 0

    def cluster_info(c: int) -> UnitInfo:
        oid = chk.owner[c]
        if c in chk.crossed:
            a, b = chk.crossed[c]
            return ("cross-linked", chk.names[a], 0, None, f"{chk.names[a]} and {chk.names[b]}")
        if oid:
            path = chk.names[oid]
            if oid in chk.dir_ids:
                return ("directory", path, 0, dir_sector, "")
            return ("data", path, 0, None, "")
        v = fat.get(c)
        return ("free" if v == 0 else "bad" if v == fat.bad else "leaked", "", 0, None, "")

    def info(s: int) -> UnitInfo:
        if s == 0:
            return ("label", "", 0, boot, "")
        if s < fat_start:
            if g.fat_type == 32 and s == g.fsinfo_sector:
                return ("reserved", "FSInfo", 0, layout.FSINFO, "")
            if backup and s == backup:
                return ("reserved", "backup boot sector", 0, boot, "")
            return ("reserved", "", 0, None, "")
        if s < fat_end:
            return ("allocmap", f"FAT {(s - fat_start) // g.fat_sectors + 1}", 0, None, "")
        if s < g.data_sector:
            return ("directory", "/", 0, dir_sector, "")
        if s < data_end:
            return cluster_info(2 + (s - g.data_sector) // spc)
        return ("reserved", "", 0, None, "")

    real = Volume(dev)  # reads for a viewer go to the real device, where bad sectors fail

    def read(sector: int, count: int) -> bytes:
        return real.read_bytes(sector * ss, count * ss)

    def target(path: str, value: int) -> int | None:
        leaf = path.rsplit(".", 1)[-1]
        if leaf in ("DIR_FstClusLO", "BPB_RootClus") and 2 <= value <= g.max_cluster:
            return g.data_sector + (value - 2) * spc
        return None

    n = min(g.total_sectors, dev.size // ss)
    extents = mark_unreadable(extents_from(0, n, info), {u for u in units_on(bad_lbas, dev.block_size, ss, 0) if u < n})
    problems = ([unreadable_problem(dev, bad_lbas)] if bad_lbas else []) + list(chk.report.problems)
    return BlockMap(dev.name, "fat", "sector", ss, 0, n, extents, problems=problems,
                    read_unit=read, text_codec="latin-1", pointer_target=target)
