"""FileDescriptorDevice: the pread/pwrite/fsync half shared by image files and device nodes.

Kept out of :mod:`fsproto.blockdev.base` on purpose: MMIO windows and user-space drivers have
no file descriptor.
"""

from __future__ import annotations

import os

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import MediaError


class FileDescriptorDevice(BlockDevice):
    """A block device over an open file descriptor ``self._fd`` (set before ``__init__``)."""

    _fd: int
    _shrink_hint = "file shrank?"  # what a short read most likely means for this kind of file

    def fileno(self) -> int:
        return self._fd

    def _read(self, lba: int, count: int) -> bytes:
        n = count * self._block_size
        try:
            data = os.pread(self._fd, n, lba * self._block_size)
        except OSError as e:
            raise MediaError(f"read failed: {e.strerror}", device=self._name, lba=lba) from e
        if len(data) != n:
            raise MediaError(f"short read ({len(data)} of {n} bytes): {self._shrink_hint}", device=self._name, lba=lba)
        return data

    def _readinto(self, lba: int, buf: bytearray | memoryview) -> None:
        n = len(buf)
        try:
            got = os.preadv(self._fd, [buf], lba * self._block_size)
        except OSError as e:
            raise MediaError(f"read failed: {e.strerror}", device=self._name, lba=lba) from e
        if got != n:
            raise MediaError(f"short read ({got} of {n} bytes): {self._shrink_hint}", device=self._name, lba=lba)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        try:
            written = os.pwrite(self._fd, data, lba * self._block_size)
        except OSError as e:
            raise MediaError(f"write failed: {e.strerror}", device=self._name, lba=lba) from e
        if written != len(data):
            raise MediaError(f"short write ({written} of {len(data)} bytes)", device=self._name, lba=lba)

    def _flush(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:
            raise MediaError(f"fsync failed: {e.strerror}", device=self._name) from e

    def _close(self) -> None:
        os.close(self._fd)
