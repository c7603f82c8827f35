"""FAT12/16/32 with VFAT long names, read-write: the ``fat`` format plugin.

``FORMAT`` is registered under the ``fsproto.formats`` entry-point group. Modules: ``layout``
(construct declarations), ``volume`` (boot sector, geometry, I/O), ``fat_table`` (entries and
chains), ``directory`` (8.3 and long names), ``files`` (data ranges), ``fs`` (the VFS view),
``mkfs``, ``fsck`` and ``blockmap`` (every sector's role, from fsck's walk).
"""

from __future__ import annotations

from typing import Any

from fsproto.errors import FsprotoError
from fsproto.formats.base import Format, FsckReport, Progress
from fsproto.formats.fat.fs import FatFilesystem
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import BlockDevice

__all__ = ["FORMAT", "FatFilesystem", "FatFormat"]


class FatFormat(Format):
    """FAT12, FAT16 and FAT32 volumes on a whole device (no partition table)."""

    name = "fat"
    description = "FAT12/16/32 with VFAT long file names (MS-DOS, Windows, UEFI, SD cards)"

    def probe(self, dev: BlockDevice) -> bool:
        """True when sector 0 is a consistent FAT boot sector. Never raises."""
        try:
            Volume(dev)
        except FsprotoError:
            return False
        except Exception:  # noqa: BLE001 - a probe answers no, whatever the bytes or the device do
            return False
        return True

    def open(self, dev: BlockDevice, **options: Any) -> FatFilesystem:
        """Raises UnknownFormat (not FAT), FormatError (corrupt), DeviceError; TypeError for options."""
        if options:
            raise TypeError(f"unexpected options for fat: {', '.join(options)}")
        return FatFilesystem(Volume(dev))

    def mkfs(self, dev: BlockDevice, *, progress: Progress | None = None, **options: Any) -> None:
        """Options: fat (12, 16, 32), block_size (cluster size in bytes), label.

        Raises UsageError, ReadOnlyError, DeviceError; TypeError for unknown options.
        """
        from fsproto.formats.fat.mkfs import mkfs  # imported when used: the CLI loads every format

        mkfs(dev, progress=progress, **options)

    def fsck(self, dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
        from fsproto.formats.fat.fsck import fsck

        return fsck(dev, repair=repair, progress=progress)

    def dump(self, dev: BlockDevice, path: str | None = None) -> str:
        from fsproto.formats.fat.dump import dump

        return dump(dev, path)

    def dump_data(self, dev: BlockDevice, path: str | None = None) -> dict[str, Any]:
        from fsproto.formats.fat.dump import dump_data

        return dump_data(dev, path)

    def block_map(self, dev: BlockDevice):
        """Every sector's role from fsck's walk. Raises UnknownFormat, FormatError, DeviceError."""
        from fsproto.formats.fat.blockmap import block_map

        return block_map(dev)

    def outline(self, dev: BlockDevice, bmap):
        """boot sector -> FATs -> directories -> cluster chains. Raises UnknownFormat, FormatError."""
        from fsproto.formats.fat.outline import outline

        return outline(dev, bmap)


FORMAT = FatFormat()
