"""A FAT volume: the validated boot sector, its geometry, and byte/cluster I/O on the device.

References: fatgen103 sections 3 (BPB), 3.5 (FAT type from the cluster count), 4 (FAT region),
5 (FSInfo). Limits: sector sizes 512-4096; the device's own block size may differ (reads and
writes that do not cover whole device blocks are read-modify-write).
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import ConstructError

from fsproto.errors import FormatError, UnknownFormat
from fsproto.formats.fat import layout
from fsproto.rawdev import BlockDevice

VALID_SECTOR_SIZES = (512, 1024, 2048, 4096)


@dataclass(frozen=True)
class Geometry:
    """Everything derived from the BPB; sector numbers are in the volume's own sectors."""

    sector_size: int
    sectors_per_cluster: int
    reserved_sectors: int
    num_fats: int
    fat_sectors: int  # sectors per FAT copy
    root_entries: int  # FAT12/16 fixed root directory slots (0 on FAT32)
    total_sectors: int
    fat_type: int  # 12, 16 or 32
    cluster_count: int  # data clusters; valid cluster numbers are 2 .. cluster_count + 1
    root_cluster: int  # FAT32 root directory's first cluster (0 on FAT12/16)
    fsinfo_sector: int  # FAT32 FSInfo sector (0 when absent)
    active_fat: int | None  # FAT32 with mirroring disabled: the only FAT in use

    @property
    def cluster_size(self) -> int:
        return self.sector_size * self.sectors_per_cluster

    @property
    def root_dir_sector(self) -> int:
        return self.reserved_sectors + self.num_fats * self.fat_sectors

    @property
    def root_dir_sectors(self) -> int:
        return (self.root_entries * layout.DIR_ENTRY_SIZE + self.sector_size - 1) // self.sector_size

    @property
    def data_sector(self) -> int:
        return self.root_dir_sector + self.root_dir_sectors

    @property
    def max_cluster(self) -> int:
        return self.cluster_count + 1


def parse_geometry(boot: bytes, device: str, device_bytes: int) -> tuple[Geometry, dict]:
    """Validate a 512-byte boot sector; returns the geometry and the parsed boot-sector fields.

    Raises UnknownFormat when the sector is not a FAT boot sector at all (no signature, no sane
    BPB), FormatError when it is one but its fields contradict each other or the device.
    """

    def bad(msg: str, offset: int) -> FormatError:
        return FormatError(msg, device=device, block=0, offset=offset, struct="BPB")

    if len(boot) < 512 or boot[510:512] != layout.SECTOR_SIGNATURE:
        raise UnknownFormat("no 55AA boot-sector signature at offset 510", device=device, block=0, offset=510)
    try:
        bpb = layout.BPB_COMMON.parse(boot)
    except ConstructError as e:  # cannot happen for 512 bytes, but keep construct's errors inside
        raise bad(f"cannot parse BPB: {e}", 0) from None
    ss = bpb.BPB_BytsPerSec
    if ss not in VALID_SECTOR_SIZES:
        raise UnknownFormat(f"BPB_BytsPerSec {ss} is not 512..4096", device=device, block=0, offset=11)
    spc = bpb.BPB_SecPerClus
    if spc == 0 or spc & (spc - 1) or spc > 128:
        raise bad(f"BPB_SecPerClus {spc} is not a power of two up to 128", 13)
    if bpb.BPB_RsvdSecCnt == 0:
        raise bad("BPB_RsvdSecCnt is 0 (the boot sector itself is reserved)", 14)
    if not 1 <= bpb.BPB_NumFATs <= 4:
        raise bad(f"BPB_NumFATs {bpb.BPB_NumFATs} is not 1..4", 16)
    total = bpb.BPB_TotSec16 or bpb.BPB_TotSec32
    if total == 0:
        raise bad("BPB_TotSec16 and BPB_TotSec32 are both 0", 19)
    if total * ss > device_bytes:
        raise bad(f"volume of {total} sectors x {ss} B is larger than the device ({device_bytes} B)", 32)
    fat32 = bpb.BPB_FATSz16 == 0
    f32 = layout.BOOT_SECTOR_FAT32.parse(boot) if fat32 else None
    fat_sectors = bpb.BPB_FATSz16 or (f32.BPB_FATSz32 if f32 else 0)
    if fat_sectors == 0:
        raise bad("BPB_FATSz16 and BPB_FATSz32 are both 0", 22)
    root_entries = bpb.BPB_RootEntCnt
    root_sectors = (root_entries * 32 + ss - 1) // ss
    meta = bpb.BPB_RsvdSecCnt + bpb.BPB_NumFATs * fat_sectors + root_sectors
    if meta >= total:
        raise bad(f"reserved, FAT and root sectors ({meta}) leave no data area in {total} sectors", 14)
    clusters = (total - meta) // spc
    fat_type = 12 if clusters <= layout.FAT12_MAX_CLUSTERS else 16 if clusters <= layout.FAT16_MAX_CLUSTERS else 32
    if fat32 != (fat_type == 32):
        raise bad(f"{clusters} clusters make a FAT{fat_type} volume but BPB_FATSz16 says "
                  f"{'FAT32' if fat32 else 'FAT12/16'}", 22)
    if clusters > layout.FAT32_MAX_CLUSTERS:
        raise bad(f"{clusters} clusters is more than FAT32 can address", 32)
    entry_bits = fat_type
    need = ((clusters + 2) * entry_bits + 7) // 8
    if fat_sectors * ss < need:
        raise bad(f"FAT of {fat_sectors} sectors cannot hold {clusters + 2} entries", 22)
    root_cluster = fsinfo = 0
    active = None
    if f32 is not None:
        if root_entries != 0:
            raise bad(f"FAT32 volume with BPB_RootEntCnt {root_entries}", 17)
        root_cluster = f32.BPB_RootClus
        if not 2 <= root_cluster <= clusters + 1:
            raise bad(f"BPB_RootClus {root_cluster} is outside clusters 2..{clusters + 1}", 44)
        fsinfo = f32.BPB_FSInfo if 0 < f32.BPB_FSInfo < bpb.BPB_RsvdSecCnt else 0
        if f32.BPB_ExtFlags & 0x80:  # mirroring disabled: only one FAT is live
            active = f32.BPB_ExtFlags & 0x0F
            if active >= bpb.BPB_NumFATs:
                raise bad(f"BPB_ExtFlags names FAT {active} of {bpb.BPB_NumFATs}", 40)
    elif root_entries == 0:
        raise bad("FAT12/16 volume with no root directory slots (BPB_RootEntCnt 0)", 17)
    geo = Geometry(ss, spc, bpb.BPB_RsvdSecCnt, bpb.BPB_NumFATs, fat_sectors, root_entries, total, fat_type,
                   clusters, root_cluster, fsinfo, active)
    fields = dict(f32) if f32 is not None else dict(layout.BOOT_SECTOR_FAT16.parse(boot))
    return geo, fields


class Volume:
    """The device plus the geometry; every FAT module does its I/O through this class."""

    def __init__(self, dev: BlockDevice) -> None:
        """Read and validate the boot sector.

        Raises UnknownFormat (not FAT), FormatError (corrupt BPB), DeviceError (I/O).
        """
        self.dev = dev
        self.name = dev.name
        if dev.size < 512:
            raise UnknownFormat("device is smaller than one boot sector", device=dev.name)
        boot = self.read_bytes(0, 512)
        self.geo, self.boot_fields = parse_geometry(boot, dev.name, dev.size)

    @property
    def read_only(self) -> bool:
        return self.dev.read_only

    # -- byte I/O ---------------------------------------------------------------------------
    def read_bytes(self, offset: int, length: int) -> bytes:
        """Bytes at a device byte offset, whatever the device block size. Raises DeviceError."""
        bs = self.dev.block_size
        first = offset // bs
        last = (offset + length + bs - 1) // bs
        data = self.dev.read(first, last - first)
        skip = offset - first * bs
        return data[skip : skip + length] if skip or len(data) != length else data

    def read_bytes_into(self, offset: int, buf: memoryview) -> None:
        """Fill *buf* from a device byte offset: in place when both ends are block aligned (the
        usual case for cluster runs), else through :meth:`read_bytes`. Raises DeviceError."""
        bs = self.dev.block_size
        whole = len(buf) - len(buf) % bs
        if offset % bs or not whole:
            buf[:] = self.read_bytes(offset, len(buf))
            return
        self.dev.readinto(offset // bs, buf[:whole])
        if whole < len(buf):  # the partial last block of a file
            buf[whole:] = self.read_bytes(offset + whole, len(buf) - whole)

    def write_bytes(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write at a device byte offset; partial device blocks are read-modify-write.

        Raises ReadOnlyError, DeviceError.
        """
        bs = self.dev.block_size
        end = offset + len(data)
        if offset % bs == 0 and end % bs == 0:
            self.dev.write(offset // bs, data)
            return
        first = offset // bs
        last = (end + bs - 1) // bs
        buf = bytearray(self.dev.read(first, 1))
        if last - first > 1:
            middle = b"\0" * ((last - first - 2) * bs)
            buf += middle + self.dev.read(last - 1, 1)
        skip = offset - first * bs
        buf[skip : skip + len(data)] = data
        self.dev.write(first, buf)

    # -- sectors and clusters ----------------------------------------------------------------
    def sector_offset(self, sector: int) -> int:
        return sector * self.geo.sector_size

    def cluster_offset(self, cluster: int) -> int:
        """Device byte offset of a data cluster (caller has checked 2 <= cluster <= max)."""
        g = self.geo
        return (g.data_sector + (cluster - 2) * g.sectors_per_cluster) * g.sector_size

    def read_clusters(self, cluster: int, count: int = 1) -> bytes:
        return self.read_bytes(self.cluster_offset(cluster), count * self.geo.cluster_size)

    def write_clusters(self, cluster: int, data: bytes | bytearray | memoryview) -> None:
        self.write_bytes(self.cluster_offset(cluster), data)

    def format_error(self, message: str, *, cluster: int | None = None, offset: int | None = None,
                     struct: str | None = None) -> FormatError:
        """A FormatError naming the device, the cluster (as the block) and its byte offset."""
        if cluster is not None and offset is None and 2 <= cluster <= self.geo.max_cluster:
            offset = self.cluster_offset(cluster)
        return FormatError(message, device=self.name, block=cluster, offset=offset, struct=struct)

    # -- FSInfo -----------------------------------------------------------------------------
    def read_fsinfo(self) -> dict | None:
        """The FAT32 FSInfo hints, or None when absent or invalid (they are only hints)."""
        if not self.geo.fsinfo_sector:
            return None
        raw = self.read_bytes(self.sector_offset(self.geo.fsinfo_sector), 512)
        try:
            return dict(layout.FSINFO.parse(raw))
        except ConstructError:
            return None

    def write_fsinfo(self, free_count: int, next_free: int) -> None:
        """Update the FSInfo hints when the sector is valid (a corrupt one is fsck's business)."""
        info = self.read_fsinfo()
        if info is None:
            return
        info["FSI_Free_Count"] = free_count
        info["FSI_Nxt_Free"] = next_free
        self.write_bytes(self.sector_offset(self.geo.fsinfo_sector), layout.FSINFO.build(info))
