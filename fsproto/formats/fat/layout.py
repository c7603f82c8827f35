"""FAT12/16/32 on-disk structures, declared with construct (declarations and constants only).

Source: Microsoft "FAT: General Overview of On-Disk Format" (fatgen103, 2000), sections 3-7;
field names are the specification's (``BPB_BytsPerSec``). Everything is little-endian.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Struct

from fsproto.formats.structview import struct_view

SECTOR_SIGNATURE = b"\x55\xaa"  # offset 510 of the boot sector
BOOT_SIG_EXTENDED = 0x29  # BS_BootSig: the three fields after it are present

# Cluster-count limits that decide the FAT type (fatgen103 section 3.5): a volume is FAT12 below
# 4085 clusters, FAT16 below 65525, FAT32 from there on. Nothing else decides the type.
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524
FAT32_MAX_CLUSTERS = 0x0FFFFFF5 - 2

# FAT entry values per type: (bad cluster, first end-of-chain value, the EOC we write).
FAT_BAD = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}
FAT_EOC_MIN = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}
FAT_EOC = {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}
FAT32_MASK = 0x0FFFFFFF  # the top 4 bits of a FAT32 entry are reserved and must be kept

# Directory entry attributes (fatgen103 section 6).
ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID
ATTR_LONG_NAME_MASK = ATTR_LONG_NAME | ATTR_DIRECTORY | ATTR_ARCHIVE

DIR_ENTRY_SIZE = 32
DIR_FREE = 0xE5  # DIR_Name[0] of a deleted entry
DIR_END = 0x00  # DIR_Name[0]: this and every later entry are free
DIR_KANJI_E5 = 0x05  # DIR_Name[0] standing for a real 0xE5 first character
MAX_DIR_ENTRIES = 65536  # fatgen103 section 6: a directory never exceeds 65,536 32-byte entries

# DIR_NTRes bits used by Windows NT and Linux for 8.3 names that are all lower case.
NTRES_LOWER_BASE = 0x08
NTRES_LOWER_EXT = 0x10

LFN_LAST = 0x40  # LDIR_Ord flag of the last (first stored) long-name entry
LFN_CHARS = 13  # UCS-2 characters per long-name entry
LFN_MAX_CHARS = 255
LFN_MAX_ENTRIES = 20

FSI_LEAD_SIG = 0x41615252
FSI_STRUC_SIG = 0x61417272
FSI_TRAIL_SIG = 0xAA550000
FSI_UNKNOWN = 0xFFFFFFFF

# The BPB common to all three FAT types: bytes 0-35 (fatgen103 section 3.1).
BPB_COMMON = Struct(
    "BS_jmpBoot" / Bytes(3),
    "BS_OEMName" / Bytes(8),
    "BPB_BytsPerSec" / Int16ul,
    "BPB_SecPerClus" / Int8ul,
    "BPB_RsvdSecCnt" / Int16ul,
    "BPB_NumFATs" / Int8ul,
    "BPB_RootEntCnt" / Int16ul,
    "BPB_TotSec16" / Int16ul,
    "BPB_Media" / Int8ul,
    "BPB_FATSz16" / Int16ul,
    "BPB_SecPerTrk" / Int16ul,
    "BPB_NumHeads" / Int16ul,
    "BPB_HiddSec" / Int32ul,
    "BPB_TotSec32" / Int32ul,
)
assert BPB_COMMON.sizeof() == 36

BOOT_SECTOR_FAT16 = """Boot sector of FAT12 and FAT16 volumes (fatgen103 section 3.2), first 512 bytes.""" * Struct(
    "bpb" / BPB_COMMON,
    "BS_DrvNum" / Int8ul,
    "BS_Reserved1" / Int8ul,
    "BS_BootSig" / Int8ul,
    "BS_VolID" / Int32ul,
    "BS_VolLab" / Bytes(11),
    "BS_FilSysType" / Bytes(8),
    "boot_code_62" / Bytes(448),
    "signature_510" / Bytes(2),
)
assert BOOT_SECTOR_FAT16.sizeof() == 512

BOOT_SECTOR_FAT32 = """Boot sector of FAT32 volumes (fatgen103 section 3.3), first 512 bytes.""" * Struct(
    "bpb" / BPB_COMMON,
    "BPB_FATSz32" / Int32ul,
    "BPB_ExtFlags" / Int16ul,
    "BPB_FSVer" / Int16ul,
    "BPB_RootClus" / Int32ul,
    "BPB_FSInfo" / Int16ul,
    "BPB_BkBootSec" / Int16ul,
    "reserved_52" / Bytes(12),
    "BS_DrvNum" / Int8ul,
    "BS_Reserved1" / Int8ul,
    "BS_BootSig" / Int8ul,
    "BS_VolID" / Int32ul,
    "BS_VolLab" / Bytes(11),
    "BS_FilSysType" / Bytes(8),
    "boot_code_90" / Bytes(420),
    "signature_510" / Bytes(2),
)
assert BOOT_SECTOR_FAT32.sizeof() == 512

FSINFO = """FAT32 FSInfo sector (fatgen103 section 5): free-cluster hints, never trusted blindly.""" * Struct(
    "FSI_LeadSig" / Const(FSI_LEAD_SIG, Int32ul),
    "FSI_Reserved1" / Bytes(480),
    "FSI_StrucSig" / Const(FSI_STRUC_SIG, Int32ul),
    "FSI_Free_Count" / Int32ul,
    "FSI_Nxt_Free" / Int32ul,
    "FSI_Reserved2" / Bytes(12),
    "FSI_TrailSig" / Const(FSI_TRAIL_SIG, Int32ul),
)
assert FSINFO.sizeof() == 512

DIR_ENTRY = """8.3 directory entry (fatgen103 section 6).""" * Struct(
    "DIR_Name" / Bytes(11),
    "DIR_Attr" / Int8ul,
    "DIR_NTRes" / Int8ul,
    "DIR_CrtTimeTenth" / Int8ul,
    "DIR_CrtTime" / Int16ul,
    "DIR_CrtDate" / Int16ul,
    "DIR_LstAccDate" / Int16ul,
    "DIR_FstClusHI" / Int16ul,
    "DIR_WrtTime" / Int16ul,
    "DIR_WrtDate" / Int16ul,
    "DIR_FstClusLO" / Int16ul,
    "DIR_FileSize" / Int32ul,
)
assert DIR_ENTRY.sizeof() == DIR_ENTRY_SIZE

LFN_ENTRY = """VFAT long-name directory entry (fatgen103 section 7): 13 UCS-2 characters in three pieces.""" * Struct(
    "LDIR_Ord" / Int8ul,
    "LDIR_Name1" / Bytes(10),
    "LDIR_Attr" / Int8ul,
    "LDIR_Type" / Int8ul,
    "LDIR_Chksum" / Int8ul,
    "LDIR_Name2" / Bytes(12),
    "LDIR_FstClusLO" / Int16ul,
    "LDIR_Name3" / Bytes(4),
)
assert LFN_ENTRY.sizeof() == DIR_ENTRY_SIZE

# The directory scan's parser, derived from DIR_ENTRY (the declaration stays the one source of the
# layout): every 32-byte slot is well-formed by size, and there is no Const to check. A struct
# unpack is ~10x construct's compiled parse, and deriving costs nothing at import (compiling did).
DIR_ENTRY_VIEW = struct_view(DIR_ENTRY)

# Characters allowed in an 8.3 name besides letters and digits (fatgen103 section 6.1).
SHORT_NAME_SPECIALS = set("$%'-_@~`!(){}^#&")
# Characters a long name may hold in addition to the short-name ones (fatgen103 section 7).
LONG_NAME_EXTRA = set("+,;=[]. ")
