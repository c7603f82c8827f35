"""GPT partition tables: header at LBA 1, entry array, both CRC32-checked; backup noted.

References: UEFI Specification 2.10, section 5.3 (GPT Header, GPT Partition Entry Array):
the header CRC32 covers ``HeaderSize`` bytes with the CRC field zeroed; the entry-array CRC32
covers ``NumberOfPartitionEntries * SizeOfPartitionEntry`` bytes; GUIDs are stored mixed-endian
(first three fields little-endian). Field names below are the specification's.

Checks (each a PartitionTableError naming the device and the LBA read): signature, header
size, header CRC, ``MyLBA``, usable range inside the device, entry size, entry array inside
the device and bounded (``MAX_ENTRY_BYTES``, so a lying count cannot exhaust memory), entry CRC,
each used entry inside the usable range, no overlaps. The backup header (at
``AlternateLBA``) is read and its state recorded in ``PartitionTable.notes``; it is never used
in place of a corrupt primary (the error message says whether it looks intact).
"""

from __future__ import annotations

import uuid
import zlib

from construct import Bytes, Const, Int32ul, Int64ul, Struct

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.partition import Partition, PartitionTable, check_partitions
from fsproto.errors import PartitionTableError

GPTHeader = Struct(
    "Signature" / Const(b"EFI PART"),
    "Revision" / Int32ul,
    "HeaderSize" / Int32ul,
    "HeaderCRC32" / Int32ul,
    "reserved_20" / Int32ul,
    "MyLBA" / Int64ul,
    "AlternateLBA" / Int64ul,
    "FirstUsableLBA" / Int64ul,
    "LastUsableLBA" / Int64ul,
    "DiskGUID" / Bytes(16),
    "PartitionEntryLBA" / Int64ul,
    "NumberOfPartitionEntries" / Int32ul,
    "SizeOfPartitionEntry" / Int32ul,
    "PartitionEntryArrayCRC32" / Int32ul,
)
"""UEFI 2.10 table 5-5, GPT Header (the rest of the sector is reserved, zero)."""
assert GPTHeader.sizeof() == 92

GPTEntry = Struct(
    "PartitionTypeGUID" / Bytes(16),
    "UniquePartitionGUID" / Bytes(16),
    "StartingLBA" / Int64ul,
    "EndingLBA" / Int64ul,  # inclusive
    "Attributes" / Int64ul,
    "PartitionName" / Bytes(72),  # UTF-16LE, NUL-padded
)
"""UEFI 2.10 table 5-6, GPT Partition Entry."""
assert GPTEntry.sizeof() == 128

MAX_ENTRY_BYTES = 1 << 20  # 8192 entries of 128 bytes; real tables use 16 KiB
UNUSED = bytes(16)

TYPE_NAMES = {
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
}


def guid(raw: bytes) -> str:
    """A mixed-endian on-disk GUID as fdisk prints it (upper case)."""
    return str(uuid.UUID(bytes_le=bytes(raw))).upper()


def has_gpt_signature(dev: BlockDevice, lba: int) -> bool:
    """True when block *lba* of *dev* starts with ``EFI PART``."""
    return lba < dev.num_blocks and dev.read(lba, 1)[:8] == b"EFI PART"


def _header(dev: BlockDevice, lba: int, name: str) -> tuple[object | None, str]:
    """(header, "") when the header at *lba* is intact, else (None, what is wrong)."""
    if lba >= dev.num_blocks:
        return None, f"lies past the end of the device ({dev.num_blocks} sectors)"
    raw = dev.read(lba, 1)
    if raw[:8] != b"EFI PART":
        return None, "has no 'EFI PART' signature"
    hdr = GPTHeader.parse(raw)
    if not 92 <= hdr.HeaderSize <= len(raw):
        return None, f"has a bad HeaderSize {hdr.HeaderSize}"
    zeroed = raw[:16] + b"\0\0\0\0" + raw[20 : hdr.HeaderSize]
    crc = zlib.crc32(zeroed)
    if crc != hdr.HeaderCRC32:
        return None, f"has a bad CRC32 (stored 0x{hdr.HeaderCRC32:08x}, computed 0x{crc:08x})"
    if hdr.MyLBA != lba:
        return None, f"says it is at lba {hdr.MyLBA}"
    return hdr, ""


def parse_gpt(dev: BlockDevice, *, name: str | None = None) -> PartitionTable:
    """Parse the GPT on *dev* (sector = ``dev.block_size``). Raises PartitionTableError, MediaError."""
    name = name or dev.name
    ss = dev.block_size
    hdr, problem = _header(dev, 1, name)
    if hdr is None:
        last = dev.num_blocks - 1
        backup = _backup_state(dev, last, name)
        raise PartitionTableError(
            f"primary GPT header {problem}; backup header at lba {last} {backup}", device=name, lba=1
        )
    last = dev.num_blocks - 1
    if not hdr.FirstUsableLBA <= hdr.LastUsableLBA <= last:
        raise PartitionTableError(
            f"usable range {hdr.FirstUsableLBA}..{hdr.LastUsableLBA} does not fit the device "
            f"({dev.num_blocks} sectors): image truncated?",
            device=name,
            lba=1,
        )
    esize, count = hdr.SizeOfPartitionEntry, hdr.NumberOfPartitionEntries
    if esize < 128 or esize % 8:
        raise PartitionTableError(f"SizeOfPartitionEntry {esize} is invalid", device=name, lba=1)
    nbytes = esize * count
    if nbytes > MAX_ENTRY_BYTES:
        raise PartitionTableError(f"entry array of {nbytes} bytes is implausibly large", device=name, lba=1)
    nsectors = -(-nbytes // ss)
    elba = hdr.PartitionEntryLBA
    if elba < 2 or elba + nsectors > dev.num_blocks:
        raise PartitionTableError(
            f"entry array ({nsectors} sectors) does not fit the device", device=name, lba=elba
        )
    array = dev.read(elba, nsectors)[:nbytes] if nsectors else b""
    crc = zlib.crc32(array)
    if crc != hdr.PartitionEntryArrayCRC32:
        raise PartitionTableError(
            f"partition entry array has a bad CRC32 (stored 0x{hdr.PartitionEntryArrayCRC32:08x}, "
            f"computed 0x{crc:08x})",
            device=name,
            lba=elba,
        )
    table = PartitionTable(
        "gpt", name, ss, guid(hdr.DiskGUID),
        first_usable=hdr.FirstUsableLBA, last_usable=hdr.LastUsableLBA, backup_lba=hdr.AlternateLBA,
    )
    lba_of: dict[int, int] = {}
    for i in range(count):
        raw = array[i * esize : i * esize + 128]
        if raw[:16] == UNUSED:
            continue
        e = GPTEntry.parse(raw)
        number = i + 1
        lba_of[number] = elba + (i * esize) // ss
        if e.EndingLBA < e.StartingLBA or e.StartingLBA < hdr.FirstUsableLBA or e.EndingLBA > hdr.LastUsableLBA:
            raise PartitionTableError(
                f"partition {number} (sectors {e.StartingLBA}..{e.EndingLBA}) is outside the usable "
                f"range {hdr.FirstUsableLBA}..{hdr.LastUsableLBA}",
                device=name,
                lba=lba_of[number],
            )
        tguid = guid(e.PartitionTypeGUID)
        table.partitions.append(
            Partition(
                number, e.StartingLBA, e.EndingLBA - e.StartingLBA + 1, ss, tguid, TYPE_NAMES.get(tguid, "unknown"),
                "gpt", name=e.PartitionName.decode("utf-16-le", "replace").split("\0", 1)[0],
                uuid=guid(e.UniquePartitionGUID), attributes=e.Attributes,
            )
        )
    check_partitions(name, table.partitions, dev.num_blocks, lba_of=lba_of)
    state = _backup_state(dev, hdr.AlternateLBA, name)
    if state != "is intact":
        table.notes.append(f"backup GPT header at lba {hdr.AlternateLBA} {state}")
    elif hdr.AlternateLBA != last:
        table.notes.append(f"backup GPT header at lba {hdr.AlternateLBA}, not at the last sector {last}: image grown?")
    return table


def _backup_state(dev: BlockDevice, lba: int, name: str) -> str:
    hdr, problem = _header(dev, lba, name)
    return problem if hdr is None else "is intact"
