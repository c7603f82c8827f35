"""IBM CMS EDF minidisks: read, write, mkfs, fsck, dump (``fsproto.formats.cms:FORMAT``).

Module map: layout (structs), volume (label, block access, dates), pointers (trees), records
(streams, F/V records, text), directory (FSTs, names), alloc (allocation map), files (copy-on-
write data writes), namespace (directory changes), fs (the Filesystem view), mkfs, fsck, dump,
blockmap (every block's role, from fsck's walk).
"""

from __future__ import annotations

from typing import Any

from fsproto.formats.base import Format, FsckReport, Progress
from fsproto.formats.cms import codepage as _codepage  # noqa: F401 - registers the cp1047 codec
from fsproto.rawdev import BlockDevice
from fsproto.vfs import Filesystem

__all__ = ["FORMAT", "CmsFormat"]


class CmsFormat(Format):
    """The CMS EDF format plugin."""

    name = "cms"
    description = "IBM CMS EDF minidisk (z/VM), as cmsfs-fuse reads and writes it"

    def probe(self, dev: BlockDevice) -> bool:
        """True when a valid-looking CMS1 label is found; never raises."""
        from fsproto.formats.cms.volume import find_label, validate_label

        try:
            label = find_label(dev)
            validate_label(label, dev)
            return True
        except Exception:
            return False

    def open(self, dev: BlockDevice, **options: Any) -> Filesystem:
        """``open(dev, text=False, codepage="cp1047")``. Raises UnknownFormat, FormatError, UsageError."""
        from fsproto.errors import UsageError
        from fsproto.formats.cms.fs import CmsFilesystem

        allowed = {"text", "codepage", "clock"}
        bad = set(options) - allowed
        if bad:
            raise UsageError(f"cms: unknown option(s) {', '.join(sorted(bad))}")
        opts = {k: v for k, v in options.items() if v is not None}
        return CmsFilesystem(dev, **opts)

    def mkfs(self, dev: BlockDevice, *, progress: Progress | None = None, **options: Any) -> None:
        """``mkfs(dev, block_size=4096, label="FSPROT")``. Raises UsageError, GeometryError, DeviceError."""
        from fsproto.formats.cms.mkfs import mkfs

        mkfs(dev, progress=progress, **options)

    def fsck(self, dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
        """Check every invariant of the spec; with *repair*, fix what can be fixed."""
        from fsproto.formats.cms.fsck import fsck

        return fsck(dev, repair=repair, progress=progress)

    def dump(self, dev: BlockDevice, path: str | None = None) -> str:
        """Decoded label and FSTs; with *path*, that file's pointer blocks too."""
        from fsproto.formats.cms.dump import dump

        return dump(dev, path)

    def dump_data(self, dev: BlockDevice, path: str | None = None) -> dict[str, Any]:
        """What :meth:`dump` prints, as data (``dump --json``)."""
        from fsproto.formats.cms.dump import dump_data

        return dump_data(dev, path)

    def block_map(self, dev: BlockDevice):
        """Every block's role from fsck's walk. Raises FormatError (no usable label), DeviceError."""
        from fsproto.formats.cms.blockmap import block_map

        return block_map(dev)

    def outline(self, dev: BlockDevice, bmap):
        """label -> directory -> file -> pointer levels -> data. Raises UnknownFormat, FormatError."""
        from fsproto.formats.cms.outline import outline

        return outline(dev, bmap)


FORMAT = CmsFormat()
