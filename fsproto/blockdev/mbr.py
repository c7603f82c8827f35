"""MBR (DOS) partition tables, including the extended/logical (EBR) chain.

References: the MBR layout (446 bytes of boot code, four 16-byte entries, 0x55AA at 510)
and the EBR chain as Linux ``block/partitions/msdos.c`` reads it: in each EBR, entry 1 is the
logical partition relative to that EBR, entry 2 links the next EBR relative to the start of
the primary extended partition. Extended types are 0x05, 0x0F and 0x85.

Loop protection: an EBR that is visited twice, lies outside the extended partition, or a
chain longer than ``MAX_LOGICAL`` raises PartitionTableError instead of looping forever.
A sector with 0x55AA whose entry status bytes are not 0x00/0x80 is not an MBR (a FAT boot
sector, say): :func:`has_mbr` says no and the device is treated as unpartitioned.
"""

from __future__ import annotations

from construct import Array, Bytes, Const, Int8ul, Int32ul, Struct

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.partition import Partition, PartitionTable, check_partitions
from fsproto.errors import PartitionTableError

MBREntry = Struct(
    "status" / Int8ul,  # 0x80 bootable, 0x00 not; anything else: not an MBR
    "chs_first" / Bytes(3),
    "type" / Int8ul,
    "chs_last" / Bytes(3),
    "lba_first" / Int32ul,
    "num_sectors" / Int32ul,
)
assert MBREntry.sizeof() == 16

MBRSector = Struct(
    "bootcode" / Bytes(440),
    "disk_signature" / Int32ul,  # what fdisk prints as "Disk identifier"
    "reserved_444" / Bytes(2),
    "entries" / Array(4, MBREntry),
    "boot_signature" / Const(b"\x55\xaa"),
)
"""The first sector of a DOS-partitioned disk (also each EBR, whose boot code is unused)."""
assert MBRSector.sizeof() == 512

EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
PROTECTIVE_TYPE = 0xEE
MAX_LOGICAL = 128

TYPE_NAMES = {
    0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16", 0x07: "HPFS/NTFS/exFAT",
    0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)", 0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 Ext'd (LBA)",
    0x82: "Linux swap / Solaris", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM",
    0xA5: "FreeBSD", 0xEE: "GPT", 0xEF: "EFI (FAT-12/16/32)", 0xFD: "Linux raid autodetect",
}


# Boot sectors of filesystems made on a whole disk also end in 0x55AA; their fs-type strings
# tell them apart (libblkid does the same): FAT12/16 at 0x36, FAT32 at 0x52, NTFS/exFAT at 3.
_VBR_MARKERS = ((0x36, b"FAT"), (0x52, b"FAT32"), (3, b"NTFS    "), (3, b"EXFAT   "))


def has_mbr(sector0: bytes) -> bool:
    """True when *sector0* carries 0x55AA and four plausible entries (status 0x00 or 0x80),
    and is not a filesystem's boot sector (FAT, NTFS, exFAT)."""
    if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
        return False
    if sector0[0] in (0xEB, 0xE9) and any(sector0[o : o + len(m)] == m for o, m in _VBR_MARKERS):
        return False
    return all(sector0[446 + 16 * i] in (0x00, 0x80) for i in range(4))


def is_protective(sector0: bytes) -> bool:
    """True when any entry has type 0xEE (a GPT disk's protective MBR)."""
    return any(sector0[446 + 16 * i + 4] == PROTECTIVE_TYPE for i in range(4))


def _parse_sector(dev: BlockDevice, lba: int, name: str) -> object:
    raw = dev.read(lba, 1)[:512]
    if raw[510:512] != b"\x55\xaa":
        raise PartitionTableError("table sector lacks the 0x55AA signature", device=name, lba=lba)
    return MBRSector.parse(raw)


def parse_mbr(dev: BlockDevice, *, name: str | None = None) -> PartitionTable:
    """Parse the MBR and its EBR chain on *dev* (sector = ``dev.block_size``).

    Raises PartitionTableError (past the end, overlaps, broken or looping EBR chain), MediaError.
    """
    name = name or dev.name
    mbr = _parse_sector(dev, 0, name)
    table = PartitionTable("mbr", name, dev.block_size, f"0x{mbr.disk_signature:08x}")
    lba_of: dict[int, int] = {}
    extended: Partition | None = None
    for slot, e in enumerate(mbr.entries):
        if e.type == 0 or e.num_sectors == 0:
            continue  # an empty slot keeps its number
        number = slot + 1
        kind = "extended" if e.type in EXTENDED_TYPES else "primary"
        p = Partition(
            number, e.lba_first, e.num_sectors, dev.block_size, f"{e.type:x}",
            TYPE_NAMES.get(e.type, "unknown"), kind, bootable=e.status == 0x80,
        )
        if kind == "extended":
            if extended is not None:
                raise PartitionTableError(
                    f"two extended partitions ({extended.number} and {number})", device=name, lba=0
                )
            extended = p
        table.partitions.append(p)
        lba_of[number] = 0
    if extended is not None:
        # The container must be sane before following links inside it.
        check_partitions(name, [extended], dev.num_blocks, lba_of=lba_of)
        for p, ebr_lba in _logicals(dev, extended, name):
            table.partitions.append(p)
            lba_of[p.number] = ebr_lba
    check_partitions(name, table.partitions, dev.num_blocks, lba_of=lba_of)
    return table


def _logicals(dev: BlockDevice, ext: Partition, name: str) -> list[tuple[Partition, int]]:
    """Follow the EBR chain of extended partition *ext*; returns (partition, EBR lba) pairs."""
    found: list[tuple[Partition, int]] = []
    seen: set[int] = set()
    ebr_lba = ext.start
    number = 5
    while True:
        if ebr_lba in seen:
            raise PartitionTableError("EBR chain loops back to an earlier EBR", device=name, lba=ebr_lba)
        if len(seen) >= MAX_LOGICAL:
            raise PartitionTableError(f"EBR chain longer than {MAX_LOGICAL} links", device=name, lba=ebr_lba)
        if not ext.start <= ebr_lba <= ext.end:
            raise PartitionTableError(
                f"EBR outside the extended partition ({ext.start}..{ext.end})", device=name, lba=ebr_lba
            )
        seen.add(ebr_lba)
        ebr = _parse_sector(dev, ebr_lba, name)
        data, link = ebr.entries[0], ebr.entries[1]
        if data.type != 0 and data.num_sectors != 0:
            if data.type in EXTENDED_TYPES:
                raise PartitionTableError("EBR data entry is itself extended", device=name, lba=ebr_lba)
            p = Partition(
                number, ebr_lba + data.lba_first, data.num_sectors, dev.block_size, f"{data.type:x}",
                TYPE_NAMES.get(data.type, "unknown"), "logical", bootable=data.status == 0x80,
            )
            if p.start <= ebr_lba or p.end > ext.end:
                raise PartitionTableError(
                    f"logical partition {number} ({p.start}..{p.end}) is not inside its extended "
                    f"partition after its EBR ({ebr_lba}..{ext.end})",
                    device=name,
                    lba=ebr_lba,
                )
            found.append((p, ebr_lba))
            number += 1
        if link.type == 0 or link.num_sectors == 0:
            return found
        if link.type not in EXTENDED_TYPES:
            raise PartitionTableError(f"EBR link has type 0x{link.type:02x}, not extended", device=name, lba=ebr_lba)
        ebr_lba = ext.start + link.lba_first


def build_mbr(partitions: list[tuple[int, int, int, bool]], disk_signature: int = 0) -> bytes:
    """A 512-byte MBR holding up to four primary (start, size, type, bootable) entries.

    CHS fields get the LBA-only marker (FE FF FF), as modern partitioners write past 8 GiB.
    Raises PartitionTableError for more than four entries.
    """
    if len(partitions) > 4:
        raise PartitionTableError(f"an MBR holds 4 primary partitions, not {len(partitions)}")
    entries = [
        dict(status=0x80 if boot else 0, chs_first=b"\xfe\xff\xff", type=ptype, chs_last=b"\xfe\xff\xff",
             lba_first=start, num_sectors=size)
        for start, size, ptype, boot in partitions
    ]
    entries += [dict(status=0, chs_first=bytes(3), type=0, chs_last=bytes(3), lba_first=0, num_sectors=0)] * (
        4 - len(entries)
    )
    return MBRSector.build(
        dict(bootcode=bytes(440), disk_signature=disk_signature, reserved_444=bytes(2), entries=entries)
    )
