"""Block devices: the public face of :mod:`fsproto.blockdev`.

Formats and drivers import from here only::

    from fsproto.rawdev import BlockDevice, ImageFile, open_device
"""

from __future__ import annotations

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.image import ImageFile
from fsproto.blockdev.open import open_device

__all__ = ["BlockDevice", "ImageFile", "open_device"]
