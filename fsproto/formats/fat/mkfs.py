"""Create an empty FAT12, FAT16 or FAT32 volume on a whole device.

References: fatgen103 sections 3 (BPB fields), 3.5 (the cluster count decides the type, so the
cluster size is chosen to land in the asked type's range), 4 (FAT[0] and FAT[1]), 5 (FSInfo);
the FAT32 backup boot sector at sector 6 follows what mkfs.fat and Windows write.
"""

from __future__ import annotations

import time

from fsproto.errors import UsageError
from fsproto.formats.base import Progress
from fsproto.formats.fat import layout
from fsproto.formats.fat.directory import ns_to_fat
from fsproto.rawdev import BlockDevice

MEDIA_FIXED = 0xF8
_ZERO_CHUNK = 1 << 20

# FAT32 default cluster sizes by volume size (the table mkfs.fat and Windows use).
_FAT32_CLUSTER = ((260 << 20, 512), (8 << 30, 4096), (16 << 30, 8192), (32 << 30, 16384))


def _default_type(size: int) -> int:
    if size >= 512 << 20:
        return 32
    return 16 if size >= 16 << 20 else 12


def _layout(total: int, ss: int, spc: int, fat_type: int) -> tuple[int, int, int, int] | None:
    """(reserved, root entries, FAT sectors, clusters) for this geometry, or None if the type misses."""
    reserved = 32 if fat_type == 32 else 1
    root_entries = 0 if fat_type == 32 else 512
    root_secs = root_entries * 32 // ss
    fat_secs = 1
    for _ in range(64):  # converges in a few rounds: the FAT shrinks the data area that sizes it
        clusters = (total - reserved - 2 * fat_secs - root_secs) // spc
        if clusters <= 0:
            return None
        need = ((clusters + 2) * fat_type + 7) // 8
        new = (need + ss - 1) // ss
        if new == fat_secs:
            break
        fat_secs = new
    clusters = (total - reserved - 2 * fat_secs - root_secs) // spc
    lo, hi = {12: (1, layout.FAT12_MAX_CLUSTERS), 16: (layout.FAT12_MAX_CLUSTERS + 1, layout.FAT16_MAX_CLUSTERS),
              32: (layout.FAT16_MAX_CLUSTERS + 1, layout.FAT32_MAX_CLUSTERS)}[fat_type]
    if not lo <= clusters <= hi:
        return None
    return reserved, root_entries, fat_secs, clusters


def _label_bytes(label: str | None) -> bytes:
    if not label:
        return b"NO NAME    "
    try:
        raw = label.upper().encode("cp437")
    except UnicodeEncodeError:
        raise UsageError(f"label {label!r} has characters code page 437 cannot hold") from None
    if len(raw) > 11 or any(c < 0x20 or chr(c) in '"*+,./:;<=>?[\\]|' for c in raw):
        raise UsageError(f"FAT labels are up to 11 characters without \"*+,./:;<=>?[\\]|: {label!r}")
    return raw.ljust(11)


def mkfs(dev: BlockDevice, *, fat: int | str | None = None, block_size: int | None = None, label: str | None = None,
         progress: Progress | None = None) -> None:
    """Format *dev* as FAT. *fat* is 12, 16 or 32 (default by size); *block_size* is the cluster size.

    Raises UsageError (bad option, device too small or too large for the type), ReadOnlyError,
    DeviceError.
    """
    ss = max(512, dev.block_size)
    if ss > 4096:
        raise UsageError(f"device block size {dev.block_size} is larger than FAT's 4096-byte sectors")
    total = min(dev.size // ss, 0xFFFFFFFF)
    fat_type = int(fat) if fat not in (None, "", "auto") else _default_type(dev.size)
    if fat_type not in (12, 16, 32):
        raise UsageError(f"--fat must be 12, 16 or 32, not {fat}")
    label_b = _label_bytes(label)
    if block_size is not None:
        if block_size < ss or block_size & (block_size - 1) or block_size // ss > 128:
            raise UsageError(f"cluster size {block_size} must be a power of two from {ss} to {ss * 128}")
        choices = [block_size // ss]
    elif fat_type == 32:
        first = next((c for limit, c in _FAT32_CLUSTER if dev.size <= limit), 32768)
        choices = [s for s in (1, 2, 4, 8, 16, 32, 64) if s * ss <= max(first, ss)][::-1] + [128]
    else:
        choices = [1, 2, 4, 8, 16, 32, 64, 128]
    found = None
    for spc in choices:
        found = _layout(total, ss, spc, fat_type)
        if found:
            break
    if found is None:
        raise UsageError(f"{dev.size} bytes cannot hold a FAT{fat_type} volume"
                         + (f" with {block_size}-byte clusters" if block_size else ""), device=dev.name)
    reserved, root_entries, fat_secs, clusters = found
    root_secs = root_entries * 32 // ss
    meta_secs = reserved + 2 * fat_secs + root_secs
    first_data = meta_secs
    # Zero everything mkfs owns: reserved area, both FATs, the fixed root (FAT12/16), the first
    # data cluster (the FAT32 root), so no stale structure survives.
    zero_end = (first_data + (spc if fat_type == 32 else 0)) * ss
    done = 0
    while done < zero_end:
        n = min(_ZERO_CHUNK, zero_end - done)
        dev.write(done // dev.block_size, bytes(n))
        done += n
        if progress:
            progress(done, zero_end)

    vol_id = int(time.time()) & 0xFFFFFFFF
    common = dict(
        BS_jmpBoot=b"\xeb\x58\x90" if fat_type == 32 else b"\xeb\x3c\x90", BS_OEMName=b"FSPROTO ",
        BPB_BytsPerSec=ss, BPB_SecPerClus=spc, BPB_RsvdSecCnt=reserved, BPB_NumFATs=2,
        BPB_RootEntCnt=root_entries, BPB_TotSec16=total if total < 0x10000 and fat_type != 32 else 0,
        BPB_Media=MEDIA_FIXED, BPB_FATSz16=0 if fat_type == 32 else fat_secs, BPB_SecPerTrk=32, BPB_NumHeads=64,
        BPB_HiddSec=0, BPB_TotSec32=0 if total < 0x10000 and fat_type != 32 else total)
    tail = dict(BS_DrvNum=0x80, BS_Reserved1=0, BS_BootSig=layout.BOOT_SIG_EXTENDED, BS_VolID=vol_id,
                BS_VolLab=label_b, BS_FilSysType=f"FAT{fat_type}".ljust(8).encode(),
                signature_510=layout.SECTOR_SIGNATURE)
    if fat_type == 32:
        boot = layout.BOOT_SECTOR_FAT32.build(dict(
            bpb=common, BPB_FATSz32=fat_secs, BPB_ExtFlags=0, BPB_FSVer=0, BPB_RootClus=2, BPB_FSInfo=1,
            BPB_BkBootSec=6, reserved_52=bytes(12), boot_code_90=bytes(420), **tail))
    else:
        boot = layout.BOOT_SECTOR_FAT16.build(dict(bpb=common, boot_code_62=bytes(448), **tail))

    def put(sector: int, data: bytes) -> None:
        # ss is a multiple of the device block size (ss = max(512, block size)), so sectors align.
        dev.write(sector * ss // dev.block_size, data.ljust(ss, b"\0"))

    put(0, boot)
    if fat_type == 32:
        fsinfo = layout.FSINFO.build(dict(FSI_Reserved1=bytes(480), FSI_Free_Count=clusters - 1, FSI_Nxt_Free=3,
                                          FSI_Reserved2=bytes(12)))
        put(1, fsinfo)
        put(6, boot)
        put(7, fsinfo)
    eoc = layout.FAT_EOC[fat_type]
    entries = [(0xFFFFFF00 | MEDIA_FIXED) & eoc, eoc] + ([eoc] if fat_type == 32 else [])
    if fat_type == 12:
        v0, v1 = entries
        first = bytes([v0 & 0xFF, ((v0 >> 8) & 0x0F) | ((v1 << 4) & 0xF0), (v1 >> 4) & 0xFF])
    else:
        first = b"".join(v.to_bytes(fat_type // 8, "little") for v in entries)
    for copy in range(2):
        put(reserved + copy * fat_secs, first)
    if label:
        date, tm, _ = ns_to_fat(time.time_ns())
        entry = layout.DIR_ENTRY.build(dict(
            DIR_Name=label_b, DIR_Attr=layout.ATTR_VOLUME_ID, DIR_NTRes=0, DIR_CrtTimeTenth=0, DIR_CrtTime=0,
            DIR_CrtDate=0, DIR_LstAccDate=0, DIR_FstClusHI=0, DIR_WrtTime=tm, DIR_WrtDate=date, DIR_FstClusLO=0,
            DIR_FileSize=0))
        put(first_data if fat_type == 32 else reserved + 2 * fat_secs, entry)
    dev.flush()
