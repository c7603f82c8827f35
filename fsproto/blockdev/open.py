"""open_device: turn a device argument (``disk.img``, ``/dev/loop0``, ``disk.img@2``) into a BlockDevice.

Spec syntax: a path that exists is taken as it is (so a file named ``a@1`` still opens);
otherwise a trailing ``@N`` selects partition N of the path before it. Regular files become
:class:`ImageFile`, block-device nodes :class:`RawDevice`. With a partition, the disk is opened
at its native sector size (512 for an image; the logical sector size for a node) to read the
table, then the partition window is adapted to *block_size*.

Stacking order: disk -> partition window -> block-size adapter -> overlay -> trace, so a
trace records what the caller did and an overlay never lets a write reach the disk.
"""

from __future__ import annotations

import os
import re
import stat

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.image import ImageFile
from fsproto.blockdev.overlay import Overlay
from fsproto.blockdev.partition import open_partition
from fsproto.blockdev.raw import RawDevice, image_busy_reasons
from fsproto.blockdev.trace import TracingDevice
from fsproto.blockdev.wrap import BlockSizeAdapter, SubDevice
from fsproto.errors import DeviceBusy, DeviceError, DeviceNotFound, NotADevice, UsageError

_PART_SUFFIX = re.compile(r"(.+)@(\d+)")


def parse_spec(spec: str, partition: int | None = None) -> tuple[str, int | None]:
    """Split *spec* into (path, partition number or None). Raises UsageError on a conflict."""
    path, number = spec, None
    if not os.path.lexists(spec):
        m = _PART_SUFFIX.fullmatch(spec)
        if m and os.path.lexists(m.group(1)):
            path, number = m.group(1), int(m.group(2))
    if partition is not None:
        if number is not None and number != partition:
            raise UsageError(f"partition {number} in the name but --partition {partition}", device=spec)
        number = partition
    if number is not None and number < 1:
        raise UsageError(f"partition numbers start at 1, not {number}", device=spec)
    return path, number


def open_device(
    spec: str,
    *,
    writable: bool = False,
    force: bool = False,
    block_size: int | None = 512,
    partition: int | None = None,
    overlay: str | os.PathLike[str] | None = None,
    trace: str | os.PathLike[str] | None = None,
) -> BlockDevice:
    """Open *spec* as a block device of *block_size*-byte blocks. Read-only unless *writable*.

    ``block_size=None`` keeps the native size (512 for an image, the logical sector size of a
    node, the table's sector size for a partition).

    *overlay* keeps every write in that copy-on-write sidecar (the disk is then opened
    read-only whatever *writable* says; the overlay takes writes iff *writable*). *trace*
    records every I/O to that file. *force* opens a block device that is mounted, has
    holders or is held O_EXCL elsewhere.
    Raises DeviceNotFound, NotADevice (a directory, a socket...), GeometryError (size not a
    multiple of the block size), DeviceBusy, PartitionTableError, UsageError (bad partition
    number), DeviceError.
    """
    if spec.startswith(("nvme:", "ahci:")) and not os.path.lexists(spec):
        from fsproto.blockdev.nvme import controller_device  # user-space drivers (hw layer, lazily); no cycle

        return stack_device(controller_device(spec, writable and overlay is None, force), partition=partition,
                            block_size=block_size, overlay=overlay, writable=writable, trace=trace)
    path, number = parse_spec(spec, partition)
    disk_writable = writable and overlay is None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DeviceNotFound("no such file or device", device=path) from None
    except OSError as e:
        raise DeviceError(f"cannot stat: {e.strerror}", device=path) from e
    disk: BlockDevice
    if stat.S_ISBLK(st.st_mode):
        disk = RawDevice(path, writable=disk_writable, force=force)
    elif stat.S_ISREG(st.st_mode):
        if disk_writable and not force:
            reasons = image_busy_reasons(path)
            if reasons:
                raise DeviceBusy(f"in use ({'; '.join(reasons)}); pass --force to write anyway", device=path)
        # With a partition the table's sectors are 512 bytes; the window is adapted below.
        disk = ImageFile(path, block_size=512 if number is not None or block_size is None else block_size,
                         writable=disk_writable)
    else:
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "neither a regular file nor a block device"
        raise NotADevice(f"is {kind}", device=path)
    return stack_device(disk, partition=number, block_size=block_size, overlay=overlay, writable=writable,
                        trace=trace)


def stack_device(
    disk: BlockDevice,
    *,
    partition: int | None,
    block_size: int | None,
    overlay: str | os.PathLike[str] | None,
    writable: bool,
    trace: str | os.PathLike[str] | None,
) -> BlockDevice:
    """Wrap an opened *disk* in the stacking order of the module docstring; closes *disk* on error.

    Shared by every kind of disk (images, nodes, user-space controllers) so they stack alike.
    """
    dev = disk
    try:
        if partition is not None:
            dev = open_partition(disk, partition)
        if block_size is not None and dev.block_size != block_size:
            dev = BlockSizeAdapter(dev, block_size, name=dev.name)
        if overlay is not None:
            dev = Overlay(dev, overlay)
            if not writable:
                dev = SubDevice(dev, 0, dev.num_blocks, name=dev.name, read_only=True)
        if trace is not None:
            dev = TracingDevice(dev, trace)
    except BaseException:
        dev.close()
        if dev is not disk:
            disk.close()
        raise
    return dev
