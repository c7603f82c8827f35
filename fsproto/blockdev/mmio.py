"""MmioBlockDevice: a block device over a linear memory-mapped store (a :class:`Region`).

Any window that behaves like memory -- anonymous memory from :func:`fsproto.hw.memory.malloc`,
an mmap'ed file, a device's RAM-like BAR (a CMB, a persistent memory region), guest RAM through
qtest -- becomes a :class:`~fsproto.blockdev.base.BlockDevice`, so every format runs on it.
Blocks are moved with the region's bulk ``read``/``write`` (memory semantics, no width
guarantee: not for register windows).

Limits: ``flush`` only orders nothing beyond what the mapping gives (an mmap'ed file is made
durable by the kernel's writeback, not by us); the device does not close the region unless
``owns_region=True``.
"""

from __future__ import annotations

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import GeometryError, HardwareError, MediaError

from fsproto.hw.region import Region  # hw sits below rawdev: this module bridges the two


class MmioBlockDevice(BlockDevice):
    """``MmioBlockDevice(region, block_size=512)``: blocks ``[0, region.size // block_size)``.

    Read-only when the region is read-only or *read_only* is set. Raises GeometryError when the
    region is smaller than one block or not a multiple of *block_size*.
    """

    @property
    def survives_fork(self) -> bool:
        return False  # fsproto's malloc is MADV_DONTFORK and a qtest session is the parent's

    def __init__(
        self,
        region: Region,
        *,
        block_size: int = 512,
        read_only: bool | None = None,
        name: str | None = None,
        owns_region: bool = False,
    ) -> None:
        name = name or f"mmio:{region.name}"
        if region.size < block_size or region.size % block_size:
            raise GeometryError(
                f"region of {region.size} bytes is not a positive multiple of the block size {block_size}", device=name
            )
        ro = (not region.writable) if read_only is None else (read_only or not region.writable)
        super().__init__(name, block_size, region.size // block_size, read_only=ro)
        self._region = region
        self._owns_region = owns_region

    @property
    def region(self) -> Region:
        return self._region

    def _read(self, lba: int, count: int) -> bytes:
        try:
            return self._region.read(lba * self._block_size, count * self._block_size)
        except HardwareError as e:
            raise MediaError(f"memory read failed: {e}", device=self._name, lba=lba) from e

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        try:
            self._region.write(lba * self._block_size, data)
        except HardwareError as e:
            raise MediaError(f"memory write failed: {e}", device=self._name, lba=lba) from e

    def _close(self) -> None:
        if self._owns_region:
            self._region.close()
