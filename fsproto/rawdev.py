"""Block devices: the public face of :mod:`fsproto.blockdev`.

Formats and drivers import from here only::

    from fsproto.rawdev import BlockDevice, ImageFile, open_device
"""

from __future__ import annotations

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.cache import VolatileCacheDevice
from fsproto.blockdev.container import ContainerDevice, sniff_container
from fsproto.blockdev.ewf import EwfDevice
from fsproto.blockdev.fault import FaultInjectingDevice
from fsproto.blockdev.image import ImageFile
from fsproto.blockdev.memory import MemoryDevice
from fsproto.blockdev.nbd import NbdBlockDevice, is_nbd_uri
from fsproto.blockdev.open import open_device, parse_spec
from fsproto.blockdev.overlay import Overlay
from fsproto.blockdev.partition import Partition, PartitionTable, open_partition, read_partition_table
from fsproto.blockdev.raw import RawDevice
from fsproto.blockdev.trace import TraceRecord, TracingDevice, read_trace, summarise
from fsproto.blockdev.wrap import BlockSizeAdapter, SubDevice, WrappedDevice

__all__ = [
    "BlockDevice",
    "BlockSizeAdapter",
    "ContainerDevice",
    "EwfDevice",
    "FaultInjectingDevice",
    "ImageFile",
    "MemoryDevice",
    "MmioBlockDevice",
    "NbdBlockDevice",
    "Overlay",
    "Partition",
    "PartitionTable",
    "RawDevice",
    "SubDevice",
    "TraceRecord",
    "TracingDevice",
    "VolatileCacheDevice",
    "WrappedDevice",
    "is_nbd_uri",
    "open_device",
    "open_partition",
    "parse_spec",
    "read_partition_table",
    "read_trace",
    "sniff_container",
    "summarise",
]


def __getattr__(name: str) -> object:
    # The hw layer's block device, imported on first use: it pulls in the hardware core (~25 ms),
    # which an offline listing of an image never touches.
    if name == "MmioBlockDevice":
        from fsproto.blockdev.mmio import MmioBlockDevice

        return MmioBlockDevice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
