"""MemoryDevice: a block device held in a ``bytearray``.

For tests and crash tests: :meth:`MemoryDevice.snapshot` returns the bytes as they are now,
:meth:`MemoryDevice.clone` a new independent device with the same contents, so a crash test
can run a workload on a fresh copy of one prepared disk per cut point.

Limits: the whole device lives in memory, so the constructor refuses sizes above
``MAX_BYTES`` (1 GiB) rather than exhausting memory on a typo.
"""

from __future__ import annotations

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import GeometryError

MAX_BYTES = 1 << 30


class MemoryDevice(BlockDevice):
    """``num_blocks`` blocks of ``block_size`` bytes in RAM, zero-filled unless *data* is given.

    ``MemoryDevice(num_blocks=..., block_size=512)`` makes a zeroed device;
    ``MemoryDevice.from_bytes(data)`` wraps a copy of existing bytes (an image read into memory).
    """

    def __init__(
        self,
        num_blocks: int,
        block_size: int = 512,
        *,
        name: str = "memory",
        read_only: bool = False,
        data: bytes | bytearray | memoryview | None = None,
    ) -> None:
        """Raises GeometryError for a negative size, a size over MAX_BYTES, or *data* of the wrong length."""
        if num_blocks < 0:
            raise GeometryError(f"negative block count {num_blocks}", device=name)
        super().__init__(name, block_size, num_blocks, read_only)
        size = num_blocks * block_size
        if size > MAX_BYTES:
            raise GeometryError(f"{size} bytes is more than a MemoryDevice holds ({MAX_BYTES})", device=name)
        if data is None:
            self._buf = bytearray(size)
        else:
            if len(data) != size:
                raise GeometryError(f"data is {len(data)} bytes, device is {size}", device=name)
            self._buf = bytearray(data)

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        block_size: int = 512,
        *,
        name: str = "memory",
        read_only: bool = False,
    ) -> "MemoryDevice":
        """A device holding a copy of *data*. Raises GeometryError when the length is not a multiple of block_size."""
        if len(data) % block_size:
            raise GeometryError(f"{len(data)} bytes is not a multiple of the block size {block_size}", device=name)
        return cls(len(data) // block_size, block_size, name=name, read_only=read_only, data=data)

    def snapshot(self) -> bytes:
        """The device's whole contents now (a copy). Raises DeviceError when closed."""
        self._check_open()
        return bytes(self._buf)

    def clone(self, *, name: str | None = None, read_only: bool | None = None) -> "MemoryDevice":
        """An independent device with the same contents; writes to one never show in the other."""
        self._check_open()
        return MemoryDevice(
            self._num_blocks,
            self._block_size,
            name=name or self._name,
            read_only=self._read_only if read_only is None else read_only,
            data=self._buf,
        )

    def _read(self, lba: int, count: int) -> bytes:
        bs = self._block_size
        return bytes(self._buf[lba * bs : (lba + count) * bs])

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        bs = self._block_size
        self._buf[lba * bs : lba * bs + len(data)] = data
