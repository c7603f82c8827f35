"""open_device: turn a device argument (``disk.img``, ``/dev/loop0``, ``disk.img@2``) into a BlockDevice."""

from __future__ import annotations

import os
import stat

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.image import ImageFile
from fsproto.errors import DeviceNotFound


def open_device(spec: str, *, writable: bool = False, force: bool = False, block_size: int = 512) -> BlockDevice:
    """Open *spec* as a block device. Read-only unless *writable*."""
    # TODO(rawdev): RawDevice, @N partitions, nvme: specs.
    try:
        st = os.stat(spec)
    except FileNotFoundError:
        raise DeviceNotFound("no such file or device", device=spec) from None
    del st, stat, force
    return ImageFile(spec, block_size=block_size, writable=writable)
