"""Helpers the controller tests over qtest share: a zeroed backing image, reading it back, and a
DMA buffer of scattered guest pages."""

from __future__ import annotations

from pathlib import Path

from fsproto.hw.memory import DmaBuffer


def zeroed_image(path: Path, blocks: int) -> Path:
    """A backing file of *blocks* 512-byte blocks of zeros for QEMU's drive."""
    path.write_bytes(bytes(blocks * 512))
    return path


def image_blocks(image: Path, lba: int, count: int) -> bytes:
    """What QEMU wrote to the backing file: *count* 512-byte blocks at *lba*."""
    with open(image, "rb") as f:
        f.seek(lba * 512)
        return f.read(count * 512)


class Scattered(DmaBuffer):
    """Guest pages in reverse address order, like pagemap-translated host memory: every page of a
    transfer needs its own PRP entry (NVMe) or PRD (AHCI), and the controller must follow the
    list to each."""

    def __init__(self, alloc, pages: int) -> None:  # type: ignore[no-untyped-def]
        self.parts = [alloc(4096) for _ in range(pages)][::-1]
        self.size = 4096 * pages
        self.region = self.parts[0].region

    def device_addr(self, offset: int = 0) -> int:
        return self.parts[offset // 4096].device_addr(offset % 4096)

    def _spans(self, offset: int, n: int):  # type: ignore[no-untyped-def]
        pos = offset
        while pos < offset + n:  # (page, offset in page, bytes), split at page boundaries
            step = min(4096 - pos % 4096, offset + n - pos)
            yield self.parts[pos // 4096], pos % 4096, step
            pos += step

    def read(self, offset: int, n: int) -> bytes:
        return b"".join(part.read(o, k) for part, o, k in self._spans(offset, n))

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        done = 0
        for part, o, k in self._spans(offset, len(data)):
            part.write(o, data[done : done + k])
            done += k

    def free(self) -> None:
        for p in self.parts:
            p.free()
