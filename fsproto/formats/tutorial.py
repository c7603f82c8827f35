"""TinyFS: a complete small filesystem in one file, the example of docs/plugins.md.

Layout (all little-endian, one block = the device's block size, at least 512 bytes)::

    block 0                  superblock (SUPERBLOCK)
    blocks 1 .. dir_blocks   directory: 64-byte ENTRY records, a free one has an empty name
    the rest                 file data: each file is one contiguous extent (start, blocks)

There is no allocation bitmap: free space is whatever no directory entry's extent covers, so
the directory is the only metadata that can disagree with itself. Every namespace change and
every size change is **one** 64-byte entry inside one block, so each is one device write and a
power cut leaves the old state or the new one. A file that outgrows its extent is copied to a
new extent first and the entry switched to it afterwards. Limits: one flat directory, names up
to 40 UTF-8 bytes, files up to 4 GiB - 1, in-place overwrites are not atomic (as in most
filesystems).

The plugin is the module-level ``FORMAT``; a package registers it with one entry point::

    [project.entry-points."fsproto.formats"]
    tiny = "fsproto.formats.tutorial:FORMAT"
"""

from __future__ import annotations

import time
from typing import Any

from construct import Array, Const, ConstructError, Int32ul, Int64ul, PaddedString, Struct

from fsproto.errors import (AlreadyExists, FileTooBig, FormatError, FsReadOnly, InvalidName, InvalidOperation,
                            IsADirectory, NameTooLong, NoSpace, NotADirectory, NotFound, UnknownFormat, UsageError)
from fsproto.formats.base import Format, FsckReport, Progress
from fsproto.formats.blockmap import BlockClaims, BlockMap, UnitInfo, extents_from
from fsproto.rawdev import BlockDevice
from fsproto.vfs import FileStat, Filesystem, FsStats, split_path

# -- 1. the on-disk structures ---------------------------------------------------------------------
MAGIC = b"TINYFS01"

SUPERBLOCK = "TinyFS superblock, block 0 (this module's docstring is the specification)" * Struct(
    "magic" / Const(MAGIC),
    "block_size" / Int32ul,
    "total_blocks" / Int32ul,
    "dir_blocks" / Int32ul,
    "label" / PaddedString(16, "utf8"),
)
assert SUPERBLOCK.sizeof() == 36

ENTRY = "TinyFS directory entry; an empty name marks a free entry" * Struct(
    "name" / PaddedString(40, "utf8"),
    "start" / Int32ul,  # first block of the extent
    "blocks" / Int32ul,  # extent length in blocks (0 for an empty file)
    "size" / Int32ul,  # bytes in use, <= blocks * block_size
    "mtime_ns" / Int64ul,
    "reserved_60" / Int32ul,
)
assert ENTRY.sizeof() == 64
ENTRY_SIZE = 64
MAX_SIZE = 0xFFFFFFFF


# -- 2. the ops class: fsproto.vfs.Filesystem over the structures ---------------------------------
class TinyFilesystem(Filesystem):
    """One open TinyFS volume; read-write iff the device is writable."""

    def __init__(self, dev: BlockDevice) -> None:
        """Raises UnknownFormat (no superblock), FormatError (inconsistent one), DeviceError."""
        self.dev = dev
        self.read_only = dev.read_only
        self.sb = read_superblock(dev)
        self.bs = self.sb.block_size
        raw = dev.read(1, self.sb.dir_blocks)
        self.entries = []
        for off in range(0, len(raw), ENTRY_SIZE):
            try:
                self.entries.append(ENTRY.parse(raw[off : off + ENTRY_SIZE]))
            except (ConstructError, UnicodeDecodeError):
                raise FormatError("directory entry name is not UTF-8", device=dev.name,
                                  block=1 + off // self.bs, offset=off % self.bs, struct="entry") from None

    # helpers
    def _slot(self, path: str) -> int:
        parent, name = split_path(path)
        if parent != "/" or not name:
            raise NotFound(f"{path}: TinyFS has only files in /", device=self.dev.name)
        for i, e in enumerate(self.entries):
            if e.name == name:
                return i
        raise NotFound(f"{path}: no such file", device=self.dev.name)

    def _save(self, i: int) -> None:
        """Write entry *i*: the block holding it is the only block that changes (the commit)."""
        per = self.bs // ENTRY_SIZE
        block = i // per
        data = b"".join(ENTRY.build(e) for e in self.entries[block * per : (block + 1) * per])
        self.dev.write(1 + block, data)

    def _writable(self) -> None:
        if self.read_only:
            raise FsReadOnly("filesystem is read-only", device=self.dev.name)

    def _used(self) -> list[tuple[int, int]]:
        return sorted((e.start, e.start + e.blocks) for e in self.entries if e.name and e.blocks)

    def _is_free(self, lo: int, hi: int) -> bool:
        return hi <= self.sb.total_blocks and not any(a < hi and lo < b for a, b in self._used())

    def _find_extent(self, blocks: int) -> int:
        """First data block of a free run of *blocks* blocks (never inside a live extent, not
        even the file's own: its old blocks must survive until the entry switches). Raises NoSpace."""
        used = self._used()
        at = 1 + self.sb.dir_blocks
        for lo, hi in used:
            if lo - at >= blocks:
                return at
            at = max(at, hi)
        if self.sb.total_blocks - at >= blocks:
            return at
        raise NoSpace(f"no free run of {blocks} blocks", device=self.dev.name)

    def _stat(self, e: Any) -> FileStat:
        return FileStat(e.name, False, e.size, e.mtime_ns, e.blocks * self.bs)

    def _read_bytes(self, e: Any, offset: int, size: int) -> bytes:
        first, last = offset // self.bs, (offset + size + self.bs - 1) // self.bs
        data = self.dev.read(e.start + first, last - first)
        skip = offset - first * self.bs
        return data[skip : skip + size]

    def _write_bytes(self, start: int, offset: int, data: bytes) -> None:
        """Write *data* at byte *offset* of the extent at *start* (partial blocks read-modify-write)."""
        first, last = offset // self.bs, (offset + len(data) + self.bs - 1) // self.bs
        buf = bytearray(self.dev.read(start + first, 1))
        if last - first > 1:
            buf += bytes((last - first - 2) * self.bs) + self.dev.read(start + last - 1, 1)
        skip = offset - first * self.bs
        buf[skip : skip + len(data)] = data
        self.dev.write(start + first, bytes(buf))

    # lookups
    def stat(self, path: str) -> FileStat:
        if split_path(path)[1] == "":
            return FileStat("/", True, 0, 0, mode=0o755, nlink=2)
        return self._stat(self.entries[self._slot(path)])

    def listdir(self, path: str = "/") -> list[FileStat]:
        if split_path(path)[1] != "":
            self._slot(path)
            raise NotADirectory(f"{path}: not a directory", device=self.dev.name)
        return [self._stat(e) for e in self.entries if e.name]

    # data
    def read(self, path: str, offset: int, size: int) -> bytes:
        if split_path(path)[1] == "":
            raise IsADirectory("/ is a directory", device=self.dev.name)
        e = self.entries[self._slot(path)]
        if offset < 0 or size < 0:
            raise InvalidOperation("negative offset or size")
        size = max(0, min(size, e.size - offset))
        return self._read_bytes(e, offset, size) if size else b""

    def _resize(self, path: str, new_size: int, offset: int, data: bytes) -> None:
        """Write *data* at *offset*, make the size *new_size*; one entry write commits it."""
        self._writable()
        i = self._slot(path)
        e = self.entries[i]
        if new_size > MAX_SIZE:
            raise FileTooBig(f"{path}: {new_size} bytes is more than TinyFS holds", device=self.dev.name)
        need = (new_size + self.bs - 1) // self.bs
        start, blocks = e.start, e.blocks
        if need > e.blocks and e.blocks and self._is_free(e.start + e.blocks, e.start + need):
            blocks = need  # the blocks right after the extent are free: grow in place
        elif need > e.blocks:  # outgrown: copy to a bigger extent, switch the entry afterwards
            blocks = max(need, 2 * e.blocks)
            try:
                start = self._find_extent(blocks)
            except NoSpace:
                blocks = need
                start = self._find_extent(blocks)
            for k in range(0, min(e.size, new_size), 1 << 20):
                self._write_bytes(start, k, self._read_bytes(e, k, min(1 << 20, e.size - k)))
        if new_size > e.size:  # bytes past the old end read as zeros, whatever the blocks held
            gap_end = offset if data else new_size
            for k in range(e.size, gap_end, 1 << 20):
                self._write_bytes(start, k, bytes(min(1 << 20, gap_end - k)))
        if data:
            self._write_bytes(start, offset, data)
        e.start, e.blocks, e.size, e.mtime_ns = start, blocks, new_size, time.time_ns()
        self._save(i)

    def write(self, path: str, offset: int, data: bytes) -> int:
        if offset < 0:
            raise InvalidOperation("negative offset")
        e = self.entries[self._slot(path)]
        if data:
            self._resize(path, max(e.size, offset + len(data)), offset, bytes(data))
        return len(data)

    def truncate(self, path: str, size: int) -> None:
        if size < 0:
            raise InvalidOperation("negative size")
        self._resize(path, size, size, b"")

    # namespace
    def create(self, path: str) -> FileStat:
        self._writable()
        parent, name = split_path(path)
        if parent != "/" or not name:
            raise InvalidName(f"{path}: TinyFS has only files in /", device=self.dev.name)
        if len(name.encode()) > 40:
            raise NameTooLong(f"{name!r} is longer than 40 UTF-8 bytes", device=self.dev.name)
        if any(e.name == name for e in self.entries):
            raise AlreadyExists(f"{path} exists", device=self.dev.name)
        free = next((k for k, e in enumerate(self.entries) if not e.name), None)
        if free is None:
            raise NoSpace("directory full", device=self.dev.name)
        self.entries[free] = ENTRY.parse(ENTRY.build(dict(name=name, start=0, blocks=0, size=0,
                                                          mtime_ns=time.time_ns(), reserved_60=0)))
        self._save(free)
        return self._stat(self.entries[free])

    def unlink(self, path: str) -> None:
        self._writable()
        i = self._slot(path)
        self.entries[i].name = ""
        self._save(i)

    def rename(self, old: str, new: str) -> None:
        self._writable()
        i = self._slot(old)
        parent, name = split_path(new)
        if parent != "/" or not name:
            raise InvalidName(f"{new}: TinyFS has only files in /", device=self.dev.name)
        if len(name.encode()) > 40:
            raise NameTooLong(f"{name!r} is longer than 40 UTF-8 bytes", device=self.dev.name)
        for k, e in enumerate(self.entries):
            if e.name == name and k != i:  # POSIX: the target goes first (a cut keeps the source)
                e.name = ""
                self._save(k)
        self.entries[i].name = name
        self._save(i)

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        self._writable()
        i = self._slot(path)
        self.entries[i].mtime_ns = max(0, mtime_ns)
        self._save(i)

    def statfs(self) -> FsStats:
        used = sum(e.blocks for e in self.entries if e.name)
        data_blocks = self.sb.total_blocks - 1 - self.sb.dir_blocks
        files = sum(1 for e in self.entries if e.name)
        return FsStats(self.bs, data_blocks, data_blocks - used, len(self.entries), len(self.entries) - files, 40,
                       self.sb.label)

    def flush(self) -> None:
        if not self.read_only and not self.dev.closed:
            self.dev.flush()


def read_superblock(dev: BlockDevice) -> Any:
    """Parse and check block 0. Raises UnknownFormat, FormatError."""
    if dev.num_blocks < 2:
        raise UnknownFormat("device too small for TinyFS", device=dev.name)
    try:
        sb = SUPERBLOCK.parse(dev.read(0, 1))
    except ConstructError:
        raise UnknownFormat("no TinyFS superblock", device=dev.name, block=0) from None
    if sb.block_size != dev.block_size or not 1 <= sb.dir_blocks < sb.total_blocks <= dev.num_blocks:
        raise FormatError(f"superblock geometry (block size {sb.block_size}, {sb.total_blocks} blocks, "
                          f"{sb.dir_blocks} directory blocks) does not fit the device", device=dev.name, block=0,
                          offset=8, struct="superblock")
    return sb


# -- 3. the plugin: probe, open, mkfs, fsck, dump, block_map --------------------------------------------
class TinyFormat(Format):
    name = "tiny"
    description = "TinyFS, the tutorial filesystem (docs/plugins.md)"

    def probe(self, dev: BlockDevice) -> bool:
        try:
            read_superblock(dev)
        except Exception:  # noqa: BLE001 - probe must never raise
            return False
        return True

    def open(self, dev: BlockDevice, **options: Any) -> TinyFilesystem:
        if options:
            raise TypeError(f"tiny takes no options, got {', '.join(options)}")
        return TinyFilesystem(dev)

    def mkfs(self, dev: BlockDevice, *, progress: Progress | None = None, label: str | None = None,
             entries: int = 128, block_size: int | None = None) -> None:
        """Write a superblock and an empty directory. Raises UsageError, DeviceError."""
        if block_size not in (None, dev.block_size):
            raise UsageError(f"TinyFS uses the device block size ({dev.block_size})")
        dir_blocks = (entries * ENTRY_SIZE + dev.block_size - 1) // dev.block_size
        if dir_blocks + 2 > dev.num_blocks:
            raise UsageError(f"{dev.num_blocks} blocks are too few for {entries} entries", device=dev.name)
        dev.write(1, bytes(dir_blocks * dev.block_size))
        sb = SUPERBLOCK.build(dict(block_size=dev.block_size, total_blocks=dev.num_blocks, dir_blocks=dir_blocks,
                                   label=(label or "")[:16]))
        dev.write(0, sb.ljust(dev.block_size, b"\0"))  # the superblock last: a cut leaves no half volume
        dev.flush()
        if progress:
            progress(1, 1)

    def fsck(self, dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
        """Extents inside the data area, sizes inside extents, unique names, no overlaps."""
        fs = TinyFilesystem(dev)
        report = FsckReport(dev.name)
        first, seen, claimed = 1 + fs.sb.dir_blocks, set(), []
        for i, e in enumerate(fs.entries):
            if not e.name:
                continue
            why = None
            if e.blocks and not first <= e.start <= e.start + e.blocks <= fs.sb.total_blocks:
                why = f"extent {e.start}+{e.blocks} is outside the data area"
            elif e.size > e.blocks * fs.bs:
                why = f"size {e.size} is larger than its extent of {e.blocks} blocks"
            elif "/" in e.name or e.name in seen:
                why = "name is a duplicate or holds '/'"
            elif any(e.blocks and lo < e.start + e.blocks and e.start < hi for lo, hi in claimed):
                why = f"extent {e.start}+{e.blocks} overlaps another file"
            if why:
                p = report.add("bad-entry", f"entry {i} ({e.name!r}): {why}; deleting it")
                if repair:
                    e.name = ""
                    fs._save(i)
                    p.fixed = True
                continue
            seen.add(e.name)
            claimed.append((e.start, e.start + e.blocks))
        report.summary = {"files": len(seen), "free blocks": fs.statfs().free_blocks}
        return report

    def block_map(self, dev: BlockDevice) -> BlockMap:
        """Superblock, directory, each file's extent, free: claimed as fsck walks the entries."""
        fs = TinyFilesystem(dev)
        claims = BlockClaims()
        claims.claim(range(1, 1 + fs.sb.dir_blocks), "directory", "directory")
        for e in fs.entries:
            if e.name and e.blocks:
                end = min(e.start + e.blocks, fs.sb.total_blocks)
                claims.claim(range(max(e.start, 1), end), e.name, "data", e.name)
        crossed = {u for u, _, _ in claims.cross}
        structs = {"directory": Struct("entries" / Array(fs.bs // ENTRY_SIZE, ENTRY))}

        def info(b: int) -> UnitInfo:
            if b == 0:
                return ("label", "", 0, SUPERBLOCK, "")
            c = claims.first.get(b)
            if c is None:
                return ("free", "", 0, None, "")
            return ("cross-linked" if b in crossed else c.role, c.owner, 0, structs.get(c.role), "")

        extents = extents_from(0, fs.sb.total_blocks, info)
        return BlockMap(dev.name, self.name, "block", fs.bs, 0, fs.sb.total_blocks, extents,
                        problems=self.fsck(dev).problems, read_unit=dev.read)

    def dump(self, dev: BlockDevice, path: str | None = None) -> str:
        fs = TinyFilesystem(dev)
        lines = [f"TinyFS {fs.sb.label!r}: {fs.sb.total_blocks} blocks of {fs.bs} B, {len(fs.entries)} entries"]
        for i, e in enumerate(fs.entries):
            if e.name and (path is None or "/" + e.name == path):
                lines.append(f"  [{i}] {e.name!r} extent {e.start}+{e.blocks} size {e.size}")
        return "\n".join(lines)


FORMAT = TinyFormat()
