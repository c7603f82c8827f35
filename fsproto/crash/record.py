"""RecordingDevice: keep the bytes of every write and the position of every flush.

The crash explorer replays these onto the pre-workload image to rebuild crash states; the
TracingDevice beside it writes the same stream as a text trace for people.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.wrap import WrappedDevice


@dataclass(frozen=True)
class Write:
    index: int  # position in the write stream (0-based)
    lba: int
    data: bytes
    blocks: int
    epoch: int  # how many flushes came before it


class RecordingDevice(WrappedDevice):
    """Passes I/O to *inner* and remembers each write (lba, bytes) and each flush."""

    def __init__(self, inner: BlockDevice, *, owns_inner: bool = False) -> None:
        super().__init__(inner, inner.name, inner.block_size, inner.num_blocks, owns_inner=owns_inner)
        self.writes: list[Write] = []
        self.flush_points: list[int] = []  # len(writes) at each flush

    def _read(self, lba: int, count: int) -> bytes:
        return self._inner.read(lba, count)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(lba, data)
        self.writes.append(Write(len(self.writes), lba, bytes(data), len(data) // self._block_size, len(self.flush_points)))

    def _flush(self) -> None:
        self._inner.flush()
        if not self.flush_points or self.flush_points[-1] != len(self.writes):
            self.flush_points.append(len(self.writes))
