"""Partition tables: what was found (:class:`PartitionTable`), the checks every scheme shares,
and opening one partition as a device.

The scheme parsers live in :mod:`fsproto.blockdev.mbr` and :mod:`fsproto.blockdev.gpt`; they
return a :class:`PartitionTable` and raise PartitionTableError naming the device and the LBA of
the structure that is wrong. Numbers follow Linux: MBR primaries are 1-4 by slot (an empty slot
keeps its number), logical partitions count from 5 along the EBR chain; GPT partitions are the
1-based entry index.

Limits: no Apple, BSD disklabel or hybrid-MBR support; a GPT with a corrupt primary header is
refused (the backup's state is reported in the message), not repaired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.wrap import BlockSizeAdapter, SubDevice
from fsproto.errors import PartitionTableError, UsageError


@dataclass(frozen=True)
class Partition:
    """One entry. ``start``/``size`` are in the table's sectors (``sector_size`` bytes)."""

    number: int
    start: int
    size: int
    sector_size: int
    type: str  # MBR: two hex digits ("83"); GPT: upper-case type GUID
    type_name: str = ""
    kind: str = "primary"  # primary | extended | logical | gpt
    bootable: bool = False
    name: str = ""  # GPT partition name
    uuid: str = ""  # GPT unique partition GUID
    attributes: int = 0

    @property
    def end(self) -> int:
        """Last sector (inclusive), as fdisk prints it."""
        return self.start + self.size - 1

    @property
    def offset_bytes(self) -> int:
        return self.start * self.sector_size

    @property
    def size_bytes(self) -> int:
        return self.size * self.sector_size


@dataclass
class PartitionTable:
    """A parsed table. ``notes`` holds harmless findings (e.g. the GPT backup's state)."""

    scheme: str  # "mbr" | "gpt"
    device: str
    sector_size: int
    disk_id: str
    partitions: list[Partition] = field(default_factory=list)
    first_usable: int | None = None  # GPT only
    last_usable: int | None = None
    backup_lba: int | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, number: int) -> Partition:
        """The partition numbered *number*. Raises UsageError when there is none."""
        for p in self.partitions:
            if p.number == number:
                return p
        have = ", ".join(str(p.number) for p in self.partitions) or "none"
        raise UsageError(f"no partition {number} (partitions: {have})", device=self.device)


def check_partitions(
    device: str, parts: list[Partition], disk_sectors: int, *, lba_of: dict[int, int] | None = None
) -> None:
    """Refuse entries past the end of the disk and overlapping entries.

    *lba_of* maps a partition number to the LBA of the table sector describing it (for the
    message). Extended containers may contain logical partitions; nothing else may overlap.
    Raises PartitionTableError.
    """
    lba_of = lba_of or {}
    for p in parts:
        if p.size <= 0:
            raise PartitionTableError(f"partition {p.number} has size {p.size}", device=device, lba=lba_of.get(p.number))
        if p.start + p.size > disk_sectors:
            raise PartitionTableError(
                f"partition {p.number} (sectors {p.start}..{p.end}) reaches past the end of the disk "
                f"({disk_sectors} sectors)",
                device=device,
                lba=lba_of.get(p.number),
            )
    # Sort by start; an extended container is allowed to hold logicals, so compare only
    # partitions that are not (container, logical) pairs.
    ordered = sorted(parts, key=lambda p: (p.start, p.number))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start > a.end:
                break
            if {a.kind, b.kind} == {"extended", "logical"}:
                continue
            raise PartitionTableError(
                f"partitions {a.number} ({a.start}..{a.end}) and {b.number} ({b.start}..{b.end}) overlap",
                device=device,
                lba=lba_of.get(b.number, lba_of.get(a.number)),
            )


def read_partition_table(dev: BlockDevice) -> PartitionTable | None:
    """The partition table on *dev*, or None when it has none (e.g. a bare filesystem).

    GPT is tried first when the MBR is protective (type 0xEE); a 512-byte-sector image holding
    a 4 KiB-sector GPT is recognised too. Raises PartitionTableError for a corrupt or lying
    table, MediaError when the device cannot be read.
    """
    from fsproto.blockdev import gpt, mbr  # the parsers import this module for the types

    if dev.num_blocks == 0:
        return None
    sector0 = dev.read(0, 1)[:512] if dev.block_size >= 512 else dev.read(0, 512 // dev.block_size)
    if not mbr.has_mbr(sector0):
        return None
    if mbr.is_protective(sector0):
        view = dev
        if dev.block_size == 512 and not gpt.has_gpt_signature(dev, 1) and dev.num_blocks > 8:
            wide = BlockSizeAdapter(dev, 4096, allow_tail=True, owns_inner=False)
            if gpt.has_gpt_signature(wide, 1):
                view = wide
        return gpt.parse_gpt(view, name=dev.name)
    return mbr.parse_mbr(dev, name=dev.name)


def open_partition(dev: BlockDevice, number: int, *, read_only: bool = False) -> SubDevice:
    """Partition *number* of *dev* as a device (closing it closes *dev*).

    Raises UsageError when *dev* has no table, no such partition, or the partition is an
    extended container; PartitionTableError for a corrupt table.
    """
    table = read_partition_table(dev)
    if table is None:
        raise UsageError("has no partition table", device=dev.name)
    part = table.get(number)
    if part.kind == "extended":
        raise UsageError(f"partition {number} is an extended container, not a volume", device=dev.name)
    return SubDevice.from_bytes(
        dev, part.offset_bytes, part.size_bytes, name=f"{dev.name}@{number}", read_only=read_only
    )
