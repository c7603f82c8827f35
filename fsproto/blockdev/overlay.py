"""Overlay: copy-on-write over another device, kept in a sidecar file.

Writes go to the sidecar; reads take each block from the sidecar when it was written, else
from the base. The base is never written except by :meth:`Overlay.commit`, so experiments on
an image leave it byte-for-byte unchanged (the base may be opened read-only).

Sidecar layout (little-endian), persistent across opens::

    header (HEADER_SIZE bytes): magic "FSPCOW01", block_size u32, num_blocks u64,
                                base fingerprint u32 (CRC32 of the base's first and last block)
    records, appended:          magic "COWR", lba u64, count u32, CRC32 of those 16 bytes,
                                then count * block_size bytes of data

A block written again is overwritten in place in its record. On open the records are scanned
to rebuild the index; a torn trailing record (the process died mid-append) is ignored and cut
off. The fingerprint catches a sidecar reopened over a different or since-modified base.

Limits: the index holds one dict entry per overlaid block (~100 bytes each), so a sidecar
with millions of written blocks costs hundreds of MiB of RAM. :meth:`commit` applies blocks in
LBA order and empties the sidecar only after the base is flushed: a crash mid-commit leaves the
sidecar intact and commit can simply be run again.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.lock import lock_fd
from fsproto.blockdev.wrap import WrappedDevice
from fsproto.errors import DeviceError, GeometryError, MediaError, ReadOnlyError

MAGIC = b"FSPCOW01"
HEADER = struct.Struct("<8sIQI")  # magic, block_size, num_blocks, fingerprint
HEADER_SIZE = 4096  # keeps record data block-aligned in the file for block sizes up to 4 KiB
RECORD = struct.Struct("<4sQII")  # magic, lba, count, crc32(first 16 bytes)
RECORD_MAGIC = b"COWR"
COMMIT_RUN_BLOCKS = 2048


def fingerprint(base: BlockDevice) -> int:
    """CRC32 of the base's first and last block: cheap, and changes when a table or superblock does."""
    if base.num_blocks == 0:
        return 0
    return zlib.crc32(base.read(base.num_blocks - 1, 1), zlib.crc32(base.read(0, 1)))


class Overlay(WrappedDevice):
    """``Overlay(base, sidecar_path)``: a writable copy-on-write view of *base*.

    Creates the sidecar if missing, else reopens it (checking it belongs to *base*). The sidecar
    is locked exclusively while open (reopening may cut a torn record: every opener writes), so
    two processes never append to one sidecar; *force* goes on when another holds it. Raises
    DeviceError (unreadable sidecar, wrong base), GeometryError (sidecar made for another size),
    DeviceBusy (the sidecar is open elsewhere).
    """

    def __init__(
        self,
        base: BlockDevice,
        sidecar: str | os.PathLike[str],
        *,
        name: str | None = None,
        owns_inner: bool = True,
        force: bool = False,
    ) -> None:
        super().__init__(base, name or f"{base.name}+cow", base.block_size, base.num_blocks, owns_inner=owns_inner)
        self._read_only = False  # the overlay takes writes even over a read-only base
        self._path = os.fspath(sidecar)
        self._index: dict[int, int] = {}  # lba -> offset of its data in the sidecar
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DeviceError(f"cannot open overlay sidecar {self._path}: {e.strerror}", device=base.name) from e
        try:
            lock_fd(self._fd, exclusive=True, force=force, name=self._path)
            self._load()
        except BaseException:
            os.close(self._fd)
            raise

    # -- sidecar bookkeeping -------------------------------------------------------------------
    def _load(self) -> None:
        bs, fp = self._block_size, fingerprint(self._inner)
        size = os.fstat(self._fd).st_size
        if size == 0:
            self._write_header(fp)
            self._end = HEADER_SIZE
            return
        head = os.pread(self._fd, HEADER.size, 0)
        if len(head) < HEADER.size or head[:8] != MAGIC:
            raise DeviceError(f"{self._path} is not an fsproto overlay sidecar", device=self._name, offset=0)
        _, sbs, snum, sfp = HEADER.unpack(head)
        if (sbs, snum) != (bs, self._num_blocks):
            raise GeometryError(
                f"overlay {self._path} was made for {snum} x {sbs} B blocks, base has {self._num_blocks} x {bs} B",
                device=self._name,
            )
        if sfp != fp:
            raise DeviceError(
                f"overlay {self._path} was made over different base contents (fingerprint "
                f"0x{sfp:08x}, base now 0x{fp:08x}); discard it or use the original base",
                device=self._name,
            )
        off = HEADER_SIZE
        while off + RECORD.size <= size:
            magic, lba, count, crc = RECORD.unpack(os.pread(self._fd, RECORD.size, off))
            data_end = off + RECORD.size + count * bs
            valid = (
                magic == RECORD_MAGIC
                and crc == zlib.crc32(RECORD.pack(magic, lba, count, 0)[:16])
                and count > 0
                and lba + count <= self._num_blocks
                and data_end <= size
            )
            if not valid:
                break  # a torn or garbage tail: everything before it is good
            for i in range(count):
                self._index[lba + i] = off + RECORD.size + i * bs
            off = data_end
        self._end = off
        if off < size:
            os.ftruncate(self._fd, off)

    def _write_header(self, fp: int) -> None:
        head = HEADER.pack(MAGIC, self._block_size, self._num_blocks, fp).ljust(HEADER_SIZE, b"\0")
        os.pwrite(self._fd, head, 0)

    @property
    def sidecar(self) -> str:
        return self._path

    @property
    def dirty_blocks(self) -> int:
        """How many blocks the overlay holds."""
        return len(self._index)

    # -- I/O --------------------------------------------------------------------------------------
    def _runs(self, lba: int, count: int) -> list[tuple[int, int, bool]]:
        """Split [lba, lba+count) into (start, length, in_overlay) runs."""
        runs: list[tuple[int, int, bool]] = []
        for b in range(lba, lba + count):
            mapped = b in self._index
            if runs and runs[-1][2] == mapped and (not mapped or self._index[b] == self._index[b - 1] + self._block_size):
                s, n, m = runs[-1]
                runs[-1] = (s, n + 1, m)
            else:
                runs.append((b, 1, mapped))
        return runs

    def _read(self, lba: int, count: int) -> bytes:
        if not self._index:
            return self._inner.read(lba, count)
        bs = self._block_size
        out = bytearray()
        for start, n, mapped in self._runs(lba, count):
            if mapped:
                data = os.pread(self._fd, n * bs, self._index[start])
                if len(data) != n * bs:
                    raise MediaError(f"overlay sidecar {self._path} is short", device=self._name, lba=start)
                out += data
            else:
                out += self._inner.read(start, n)
        return bytes(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        bs = self._block_size
        view = memoryview(data)
        try:
            for start, n, mapped in self._runs(lba, len(data) // bs):
                chunk = view[(start - lba) * bs : (start - lba + n) * bs]
                if mapped:
                    os.pwrite(self._fd, chunk, self._index[start])
                    continue
                head = RECORD.pack(RECORD_MAGIC, start, n, 0)[:16]
                rec = RECORD.pack(RECORD_MAGIC, start, n, zlib.crc32(head))
                # Data first, then the record header: a crash in between leaves a tail the
                # scan in _load rejects, never a header pointing at missing data.
                os.pwrite(self._fd, chunk, self._end + RECORD.size)
                os.pwrite(self._fd, rec, self._end)
                for i in range(n):
                    self._index[start + i] = self._end + RECORD.size + i * bs
                self._end += RECORD.size + n * bs
        except OSError as e:
            raise MediaError(f"overlay sidecar write failed: {e.strerror}", device=self._name, lba=lba) from e

    def _flush(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:
            raise MediaError(f"overlay sidecar fsync failed: {e.strerror}", device=self._name) from e

    def _close(self) -> None:
        os.close(self._fd)
        super()._close()

    # -- commit / discard ------------------------------------------------------------------------
    def commit(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Write every overlaid block to the base, flush it, then empty the sidecar.

        *progress(done, total)* is called after each run of blocks. Returns the number of
        blocks written. Raises ReadOnlyError when the base is read-only,
        MediaError, DeviceError when closed.
        """
        self._check_open()
        if self._inner.read_only:
            raise ReadOnlyError("cannot commit the overlay: base opened read-only", device=self._inner.name)
        lbas = sorted(self._index)
        i = 0
        while i < len(lbas):
            j = i
            # Runs of contiguous blocks, capped so each read stays small.
            while j + 1 < len(lbas) and lbas[j + 1] == lbas[j] + 1 and j - i < COMMIT_RUN_BLOCKS - 1:
                j += 1
            self._inner.write(lbas[i], self._read(lbas[i], j - i + 1))
            i = j + 1
            if progress is not None:
                progress(i, len(lbas))
        self._inner.flush()
        self._reset()
        return len(lbas)

    def discard(self) -> int:
        """Forget every overlaid write (the base is untouched). Returns how many blocks were dropped."""
        self._check_open()
        dropped = len(self._index)
        self._reset()
        return dropped

    def _reset(self) -> None:
        self._index.clear()
        os.ftruncate(self._fd, HEADER_SIZE)
        self._end = HEADER_SIZE
        self._write_header(fingerprint(self._inner))  # the base may have changed (commit)
        os.fsync(self._fd)
