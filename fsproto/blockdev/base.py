"""The block-device interface every backend and wrapper implements.

A block device is an array of ``num_blocks`` blocks of ``block_size`` bytes, addressed by
0-based LBA. Nothing here assumes a file descriptor: MMIO windows and user-space NVMe
drivers implement the same five methods. Subclasses implement ``_read``/``_write`` (and
optionally ``_flush``/``_close``); this base does the bounds, size and read-only checks so
every backend refuses bad requests the same way.
"""

from __future__ import annotations

import abc
from types import TracebackType

from fsproto.errors import DeviceError, OutOfRange, ReadOnlyError, UsageError

# One request may move at most this much: a bigger one is a bug (a whole-disk read of a
# multi-TB device), and refusing it beats exhausting memory. Callers stream in chunks.
MAX_REQUEST_BYTES = 1 << 30


class BlockDevice(abc.ABC):
    """Abstract block device. Raises only :mod:`fsproto.errors` types."""

    def __init__(self, name: str, block_size: int, num_blocks: int, read_only: bool) -> None:
        if block_size <= 0 or block_size & (block_size - 1):
            raise DeviceError(f"block size {block_size} is not a power of two", device=name)
        self._name = name
        self._block_size = block_size
        self._num_blocks = num_blocks
        self._read_only = read_only
        self._closed = False

    # -- read-only properties --------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._block_size * self._num_blocks

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def survives_fork(self) -> bool:
        """False when a forked child cannot use this device (user-space drivers: their DMA
        memory is MADV_DONTFORK and their controller session belongs to the parent)."""
        return True

    # -- the interface -----------------------------------------------------------------------
    def read(self, lba: int, count: int = 1) -> bytes:
        """Read *count* blocks starting at *lba*.

        Raises OutOfRange past the end, UsageError above MAX_REQUEST_BYTES, MediaError on an
        I/O error, DeviceError when closed.
        """
        self._check_open()
        self._check_read_range(lba, count)
        if count == 0:
            return b""
        return self._read(lba, count)

    def readinto(self, lba: int, buf: bytearray | memoryview) -> int:
        """Read ``len(buf) // block_size`` blocks starting at *lba* into *buf* (a writable buffer
        whose length is a multiple of block_size); returns the bytes read.

        For callers that reuse one buffer: a fresh multi-megabyte ``bytes`` per read is what
        big reads cost (glibc hands such sizes out as new mmap'd pages, faulted in on every
        call), not the system call. Raises like :meth:`read`, DeviceError for a partial block.
        """
        self._check_open()
        count = self._whole_blocks(len(buf), "read into", lba)
        self._check_read_range(lba, count)
        if count:
            self._readinto(lba, buf)
        return count * self._block_size

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        """Write whole blocks starting at *lba*; ``len(data)`` must be a multiple of block_size.

        Raises ReadOnlyError, OutOfRange, DeviceError for a partial block, MediaError.
        """
        self._check_open()
        if self._read_only:
            raise ReadOnlyError("device is read-only", device=self._name, lba=lba)
        count = self._whole_blocks(len(data), "write of", lba)
        self._check_range(lba, count)
        if count:
            self._write(lba, data)

    def trim(self, lba: int, count: int) -> None:
        """Tell the device *count* blocks at *lba* hold nothing worth keeping (discard / TRIM /
        NVMe Dataset Management deallocate). Advisory: afterwards the blocks read as their old
        contents or as zeroes, whichever the device does; a device that cannot trim ignores it.

        Raises ReadOnlyError, OutOfRange, MediaError.
        """
        self._check_writable_range(lba, count)
        if count:
            self._trim(lba, count)

    def write_zeroes(self, lba: int, count: int) -> None:
        """Set *count* blocks at *lba* to zero without sending the zeroes where the device can
        (NVMe Write Zeroes); otherwise zero-filled writes. Raises like :meth:`trim`."""
        self._check_writable_range(lba, count)
        if count:
            self._write_zeroes(lba, count)

    def flush(self) -> None:
        """Make every completed write durable."""
        self._check_open()
        if not self._read_only:
            self._flush()

    def close(self) -> None:
        """Flush and release the device; idempotent."""
        if self._closed:
            return
        try:
            if not self._read_only:
                self._flush()
        finally:
            self._closed = True
            self._close()

    def __enter__(self) -> "BlockDevice":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __str__(self) -> str:
        mode = "ro" if self._read_only else "rw"
        return (
            f"{type(self).__name__}({self._name}, {self._num_blocks} x {self._block_size} B, {mode})"
        )

    __repr__ = __str__

    # -- for subclasses ----------------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, lba: int, count: int) -> bytes: ...

    @abc.abstractmethod
    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None: ...

    def _readinto(self, lba: int, buf: bytearray | memoryview) -> None:
        """Fill *buf* from *lba* (checked by the caller); devices that can read in place override it."""
        buf[:] = self._read(lba, len(buf) // self._block_size)

    def _flush(self) -> None:  # noqa: B027 - optional hook
        pass

    def _trim(self, lba: int, count: int) -> None:  # noqa: B027 - optional hook: trim is advisory
        pass

    def _write_zeroes(self, lba: int, count: int) -> None:
        step = max(1, (1 << 20) // self._block_size)
        for start in range(lba, lba + count, step):
            n = min(step, lba + count - start)
            self._write(start, bytes(n * self._block_size))

    def _whole_blocks(self, nbytes: int, what: str, lba: int) -> int:
        """Blocks in a buffer of *nbytes*; DeviceError when it ends in a partial block."""
        if nbytes % self._block_size:
            raise DeviceError(
                f"{what} {nbytes} bytes is not a multiple of the block size {self._block_size}",
                device=self._name,
                lba=lba,
            )
        return nbytes // self._block_size

    def _check_read_range(self, lba: int, count: int) -> None:
        self._check_range(lba, count)
        if count * self._block_size > MAX_REQUEST_BYTES:
            raise UsageError(
                f"read of {count} blocks exceeds the {MAX_REQUEST_BYTES >> 20} MiB request limit; read in chunks",
                device=self._name,
                lba=lba,
            )

    def _check_writable_range(self, lba: int, count: int) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyError("device is read-only", device=self._name, lba=lba)
        self._check_range(lba, count)

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("device is closed", device=self._name)

    def _check_range(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self._num_blocks:
            raise OutOfRange(
                f"access of {count} block(s) past the end ({self._num_blocks} blocks)",
                device=self._name,
                lba=lba,
            )
