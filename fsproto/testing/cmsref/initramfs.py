"""The guest's initramfs: a newc cpio archive, gzip-compressed, written in Python.

No root, no loop device, no host ``cpio``: the kernel's initramfs unpacker accepts the
``070701`` ("newc") format with device nodes, so ``/dev/console`` exists before ``/init``
runs (without it init has no stdout). References: the kernel's
``Documentation/driver-api/early-userspace/buffer-format.rst``.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One archive member; ``data`` is the file's bytes or a symlink's target."""

    path: str  # no leading slash: "bin/busybox"
    mode: int  # full st_mode, type bits included
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class Archive:
    """An ordered set of entries; parents are added automatically as directories."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return path.strip("/") in self._entries

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._entries:
                self._entries[d] = Entry(d, stat.S_IFDIR | 0o755)

    def add(self, entry: Entry) -> None:
        path = entry.path.strip("/")
        self._parents(path)
        self._entries[path] = Entry(path, entry.mode, entry.data, entry.rdev)

    def dir(self, path: str, perm: int = 0o755) -> None:
        self.add(Entry(path, stat.S_IFDIR | perm))

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self.add(Entry(path, stat.S_IFREG | perm, data))

    def copy(self, path: str, source: Path) -> None:
        """Add *source*'s bytes (symlinks followed) with its permission bits."""
        st = source.stat()
        self.file(path, source.read_bytes(), stat.S_IMODE(st.st_mode))

    def symlink(self, path: str, target: str) -> None:
        self.add(Entry(path, stat.S_IFLNK | 0o777, target.encode()))

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        self.add(Entry(path, stat.S_IFCHR | perm, b"", (major, minor)))

    def cpio(self) -> bytes:
        """The uncompressed newc stream, entries in insertion order, then the trailer."""
        out = bytearray()
        ino = 1
        for e in list(self._entries.values()) + [Entry("TRAILER!!!", 0)]:
            name = e.path.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(e.mode) else 1
            fields = (
                ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0,
            )
            out += b"070701" + b"".join(b"%08X" % f for f in fields)
            out += name
            out += b"\0" * (-len(out) % 4)  # header + name padded to 4 bytes
            out += e.data
            out += b"\0" * (-len(out) % 4)
            ino += 1
        return bytes(out)

    def write_gz(self, path: Path, level: int = 6) -> int:
        """Write the gzip-compressed archive to *path* atomically; returns its size."""
        blob = gzip.compress(self.cpio(), compresslevel=level, mtime=0)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
        return len(blob)
