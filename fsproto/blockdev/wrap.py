"""Wrappers: block devices that sit on another block device.

:class:`WrappedDevice` is the common base (flush and close go down to the inner device).
:class:`SubDevice` is a window (an LBA or byte range) of another device, what a partition is.
:class:`BlockSizeAdapter` presents another block size than the device under it has.

Ownership: a wrapper closes its inner device when it is closed, unless built with
``owns_inner=False`` (then the caller keeps the inner device and closes it itself).

Block-size adaptation, crash caveat: when the presented block is *smaller* than the inner
one (512-byte blocks on a 4096-byte-sector device), every write is a read-modify-write of whole
inner sectors. So a small write needs the old bytes of its neighbours (a media error in the
sector makes writing any of its small blocks fail), and a format that relies on a power cut
leaving each small block old-or-new gets that only as far as the inner sector write is atomic:
if the hardware tears or loses the inner sector, the neighbours the caller never wrote go with
it. Two adapters over the same sector must not be used concurrently (lost updates). The other
direction (big blocks on small sectors) only splits requests; there a power cut can leave a big
block with some of its sectors new and some old.
"""

from __future__ import annotations

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import GeometryError


class WrappedDevice(BlockDevice):
    """A device on top of *inner*; subclasses translate ``_read``/``_write``."""

    def __init__(
        self,
        inner: BlockDevice,
        name: str,
        block_size: int,
        num_blocks: int,
        *,
        read_only: bool = False,
        owns_inner: bool = True,
    ) -> None:
        super().__init__(name, block_size, num_blocks, read_only or inner.read_only)
        self._inner = inner
        self._owns_inner = owns_inner

    @property
    def inner(self) -> BlockDevice:
        """The device under this one."""
        return self._inner

    @property
    def survives_fork(self) -> bool:
        return self._inner.survives_fork

    def _flush(self) -> None:
        self._inner.flush()

    def _close(self) -> None:
        if self._owns_inner:
            self._inner.close()


class SubDevice(WrappedDevice):
    """Blocks ``start .. start + num_blocks - 1`` of *inner*, renumbered from 0.

    The block size is the inner one. :meth:`from_bytes` takes a byte range instead (both ends
    must be inner-block aligned).
    """

    def __init__(
        self,
        inner: BlockDevice,
        start: int,
        num_blocks: int,
        *,
        name: str | None = None,
        read_only: bool = False,
        owns_inner: bool = True,
    ) -> None:
        """Raises GeometryError when the window is empty-negative or reaches past the end of *inner*."""
        label = name or f"{inner.name}[{start}+{num_blocks}]"
        if start < 0 or num_blocks < 0 or start + num_blocks > inner.num_blocks:
            raise GeometryError(
                f"window of {num_blocks} block(s) at lba {start} does not fit in {inner.num_blocks} blocks",
                device=inner.name,
                lba=start,
            )
        super().__init__(inner, label, inner.block_size, num_blocks, read_only=read_only, owns_inner=owns_inner)
        self._start = start

    @classmethod
    def from_bytes(
        cls,
        inner: BlockDevice,
        offset: int,
        length: int,
        *,
        name: str | None = None,
        read_only: bool = False,
        owns_inner: bool = True,
    ) -> "SubDevice":
        """The window ``[offset, offset + length)`` in bytes. Raises GeometryError when unaligned or too big."""
        bs = inner.block_size
        if offset % bs or length % bs:
            raise GeometryError(
                f"byte window {offset}+{length} is not aligned to the block size {bs}", device=inner.name, offset=offset
            )
        return cls(inner, offset // bs, length // bs, name=name, read_only=read_only, owns_inner=owns_inner)

    @property
    def start(self) -> int:
        """First inner LBA of the window."""
        return self._start

    def _read(self, lba: int, count: int) -> bytes:
        return self._inner.read(self._start + lba, count)

    def _readinto(self, lba: int, buf: bytearray | memoryview) -> None:
        self._inner.readinto(self._start + lba, buf)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(self._start + lba, data)


class BlockSizeAdapter(WrappedDevice):
    """Presents blocks of *block_size* on *inner*, whose block size may be smaller or larger.

    Bigger blocks (4096 on 512-byte sectors): each block is ``ratio`` inner sectors; an inner
    device whose size is not a multiple of the new block size raises GeometryError unless
    ``allow_tail=True``, which ignores the trailing partial block.

    Smaller blocks (512 on 4096-byte sectors): reads slice inner sectors; writes read, modify
    and write back whole inner sectors (see the module docstring for the crash caveat).
    """

    def __init__(
        self,
        inner: BlockDevice,
        block_size: int,
        *,
        name: str | None = None,
        read_only: bool = False,
        allow_tail: bool = False,
        owns_inner: bool = True,
    ) -> None:
        """Raises GeometryError for a size that does not divide, DeviceError for a non-power-of-two size."""
        ibs = inner.block_size
        label = name or f"{inner.name}(bs={block_size})"
        if block_size >= ibs:
            if block_size % ibs:
                raise GeometryError(f"block size {block_size} is not a multiple of {ibs}", device=inner.name)
            num_blocks, tail = divmod(inner.size, block_size)
            if tail and not allow_tail:
                raise GeometryError(
                    f"device size {inner.size} is not a multiple of the block size {block_size}",
                    device=inner.name,
                )
        else:
            if block_size <= 0 or ibs % block_size:
                raise GeometryError(f"block size {block_size} does not divide {ibs}", device=inner.name)
            num_blocks = inner.size // block_size
        super().__init__(inner, label, block_size, num_blocks, read_only=read_only, owns_inner=owns_inner)

    def _read(self, lba: int, count: int) -> bytes:
        bs, ibs = self._block_size, self._inner.block_size
        if bs >= ibs:
            r = bs // ibs
            return self._inner.read(lba * r, count * r)
        first, last = (lba * bs) // ibs, ((lba + count) * bs - 1) // ibs
        data = self._inner.read(first, last - first + 1)
        skip = lba * bs - first * ibs
        return data[skip : skip + count * bs]

    def _readinto(self, lba: int, buf: bytearray | memoryview) -> None:
        bs, ibs = self._block_size, self._inner.block_size
        if bs >= ibs:  # whole inner sectors: read in place
            self._inner.readinto(lba * (bs // ibs), buf)
        else:
            super()._readinto(lba, buf)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        bs, ibs = self._block_size, self._inner.block_size
        if bs >= ibs:
            self._inner.write(lba * (bs // ibs), data)
            return
        start, end = lba * bs, lba * bs + len(data)
        first, last = start // ibs, (end - 1) // ibs
        # Only the partial inner sectors at either end need their old bytes: read just those.
        buf = bytearray((last - first + 1) * ibs)
        if start % ibs:
            buf[:ibs] = self._inner.read(first, 1)
        if end % ibs and (last != first or not start % ibs):
            buf[-ibs:] = self._inner.read(last, 1)
        off = start - first * ibs
        buf[off : off + len(data)] = data
        self._inner.write(first, buf)
